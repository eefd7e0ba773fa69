// Noise block generator, AVX-512 (F, DQ, VL, BW) + FMA build, 512-bit vectors (chosen at run time when available).
#define NOISE_BLOCKS_NAME noise_blocks_avx512
#define NOISE_BACKWARD_NAME backward_chunk_avx512
#define NOISE_RANGE_NAME range_avx512
#define NOISE_FACTORS_NAME group_factors_avx512
#define NOISE_BITS_NAME bits_sum_avx512
#define NOISE_BITS_GRAD_NAME bits_sum_grad_avx512
#include "noise_blocks.inc"
