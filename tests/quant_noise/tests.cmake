# Quant-Noise and iPQ tests.
diffq_add_test(test_quant_noise ${CMAKE_CURRENT_LIST_DIR}/test_quant_noise.cpp)
