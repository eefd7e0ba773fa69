# Test executables that need torch.
diffq_add_test(test_sizes test_sizes.cpp)
diffq_add_test(test_gradients test_gradients.cpp)
diffq_add_test(test_behaviour test_behaviour.cpp)
diffq_add_test(test_errors test_errors.cpp)
diffq_add_test(test_learning test_learning.cpp)
diffq_add_test(test_torchscript test_torchscript.cpp)
diffq_add_test(test_noise test_noise.cpp)
diffq_add_test(test_model_file test_model_file.cpp)
