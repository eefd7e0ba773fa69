# Tests of bit-packing, entropy coding and the model file format (torch-free).
# Included by tests/CMakeLists.txt.
add_executable(test_format
  ${CMAKE_CURRENT_LIST_DIR}/test_packing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_entropy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_roundtrip.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_corruption.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_atomic_save.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_v1_fixture.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_v2.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_format_bounds.cpp
  ${CMAKE_CURRENT_LIST_DIR}/state_factory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/v1_fixture.cpp
)
target_link_libraries(test_format PRIVATE diffq_core xxhash GTest::gtest_main)
target_include_directories(test_format PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_compile_definitions(test_format PRIVATE DIFFQ_FIXTURE_DIR="${CMAKE_CURRENT_LIST_DIR}/fixtures")
gtest_discover_tests(test_format DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300)

# The program that wrote the committed version-1 fixtures (with the version-1
# writer). Not built by default; it refuses to run with a newer writer.
add_executable(make_v1_fixture EXCLUDE_FROM_ALL
  ${CMAKE_CURRENT_LIST_DIR}/make_v1_fixture.cpp
  ${CMAKE_CURRENT_LIST_DIR}/v1_fixture.cpp
)
target_link_libraries(make_v1_fixture PRIVATE diffq_core)
