# Quant-Noise experiment on Fashion-MNIST (ResNet-20-style).
add_executable(quant_noise_fashion ${CMAKE_CURRENT_LIST_DIR}/quant_noise_fashion.cpp)
target_link_libraries(quant_noise_fashion PRIVATE diffq diffq_data)
target_compile_definitions(quant_noise_fashion PRIVATE
  DIFFQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
