# Tests of the diffq command-line tool (in-process and as a program).
diffq_add_test(test_cli
  ${CMAKE_CURRENT_LIST_DIR}/test_cli.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_resume.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_smoke.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_cli_models.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_run_ownership.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_signals.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_bad_options.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_hostile_files.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_oneshot_cli.cpp)
target_link_libraries(test_cli PRIVATE diffq_cli xxhash)
target_compile_definitions(test_cli PRIVATE
  DIFFQ_TOOL="$<TARGET_FILE:diffq_tool>"
  DIFFQ_CLI_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures"
  DIFFQ_TOOL_JEMALLOC=$<BOOL:${DIFFQ_JEMALLOC}>)
add_dependencies(test_cli diffq_tool)
