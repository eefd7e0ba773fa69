# DiffQ's fused noise kernels (portable + AVX2/FMA, chosen at run time).
target_sources(diffq PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_kernels.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_generic.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_avx2.cpp)
set_source_files_properties(
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_kernels.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_generic.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_avx2.cpp
  PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_avx2.cpp
  PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-O3;-fno-math-errno;-fno-trapping-math")
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_blocks_generic.cpp
  PROPERTIES COMPILE_OPTIONS "-O3;-fno-math-errno;-fno-trapping-math")
# The group sums may be reassociated (vectorised): they are gradients.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/../src/noise/noise_kernels.cpp
  PROPERTIES COMPILE_OPTIONS "-O3;-fno-math-errno;-fno-trapping-math;-fassociative-math;-fno-signed-zeros")
