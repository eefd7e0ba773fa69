# Quant-Noise and iterative product quantization (added to the diffq library).
target_sources(diffq PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../src/kmeans.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/quant_noise.cpp
)
