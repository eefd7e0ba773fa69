# Tests of the diffq command-line tool (in-process and as a program).
diffq_add_test(test_cli
  ${CMAKE_CURRENT_LIST_DIR}/test_cli.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_resume.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_smoke.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_cli_models.cpp)
target_link_libraries(test_cli PRIVATE diffq_cli)
target_compile_definitions(test_cli PRIVATE
  DIFFQ_TOOL="$<TARGET_FILE:diffq_tool>"
  DIFFQ_CLI_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")
add_dependencies(test_cli diffq_tool)
