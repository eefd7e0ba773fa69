# Tests of the training library (Trainer, step strategies, gradient hooks,
# checkpoints, configuration and options round trips).
diffq_add_test(test_train ${CMAKE_CURRENT_LIST_DIR}/test_trainer.cpp ${CMAKE_CURRENT_LIST_DIR}/test_options.cpp
               ${CMAKE_CURRENT_LIST_DIR}/test_size_target.cpp ${CMAKE_CURRENT_LIST_DIR}/test_oneshot_training.cpp)
target_link_libraries(test_train PRIVATE diffq_train diffq_cli)
target_include_directories(test_train PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../cli)
