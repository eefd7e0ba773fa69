# Bit-packing and entropy-coding benchmark (torch-free). Included from
# benchmarks/CMakeLists.txt, or from cmake/format.cmake in core-only builds.
if(NOT TARGET bench_packing)
  add_executable(bench_packing ${CMAKE_CURRENT_LIST_DIR}/bench_packing.cpp)
  target_link_libraries(bench_packing PRIVATE diffq_core)
endif()
