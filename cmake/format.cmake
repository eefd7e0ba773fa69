# Sources of the model file format and bit-packing (torch-free), added to
# diffq_core. Owned by the file-format work.
target_sources(diffq_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/packing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/packing_kernels_generic.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/packing_kernels_avx2.cpp
)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|i.86")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/../src/core/packing_kernels_avx2.cpp
    PROPERTIES COMPILE_OPTIONS "-mavx2")
endif()
target_compile_definitions(diffq_core PRIVATE DIFFQ_LIBRARY_VERSION="${PROJECT_VERSION}")
target_link_libraries(diffq_core PRIVATE zstd xxhash)
target_sources(diffq_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/entropy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/format_common.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/format_payload.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/format_read.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/core/format_write.cpp
)
# In core-only builds the benchmarks directory is skipped: build the packing
# benchmark from here (it only needs diffq_core).
if(DIFFQ_CORE_ONLY AND DIFFQ_BUILD_BENCHMARKS AND NOT DIFFQ_FUZZ)
  include(${CMAKE_CURRENT_LIST_DIR}/../benchmarks/format.cmake)
endif()
