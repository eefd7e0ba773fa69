# Data-parallel training over several local processes (c10d, Gloo, loopback).
add_executable(dist_worker ${CMAKE_CURRENT_LIST_DIR}/dist_worker.cpp)
target_link_libraries(dist_worker PRIVATE diffq_train)
diffq_add_test(test_distributed ${CMAKE_CURRENT_LIST_DIR}/test_distributed.cpp)
target_link_libraries(test_distributed PRIVATE diffq_train diffq_cli)
target_include_directories(test_distributed PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../cli)
target_compile_definitions(test_distributed PRIVATE
  DIFFQ_TOOL="$<TARGET_FILE:diffq_tool>"
  DIFFQ_DIST_WORKER="$<TARGET_FILE:dist_worker>")
add_dependencies(test_distributed diffq_tool dist_worker)
