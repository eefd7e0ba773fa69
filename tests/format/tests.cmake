# Tests of bit-packing, entropy coding and the model file format (torch-free).
# Included by tests/CMakeLists.txt.
add_executable(test_format
  ${CMAKE_CURRENT_LIST_DIR}/test_packing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_entropy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_roundtrip.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_corruption.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_atomic_save.cpp
  ${CMAKE_CURRENT_LIST_DIR}/state_factory.cpp
)
target_link_libraries(test_format PRIVATE diffq_core xxhash GTest::gtest_main)
target_include_directories(test_format PRIVATE ${CMAKE_CURRENT_LIST_DIR})
gtest_discover_tests(test_format DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300)
