# Tests of the data set readers (IDX, KJV text).
diffq_add_test(test_data ${CMAKE_CURRENT_LIST_DIR}/test_text_data.cpp)
target_link_libraries(test_data PRIVATE diffq_data diffq_cli)
target_include_directories(test_data PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../cli)
target_compile_definitions(test_data PRIVATE DIFFQ_CLI_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/../cli/fixtures")
