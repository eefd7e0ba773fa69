// Noise block generator, AVX2 + FMA build (chosen at run time when available).
#define NOISE_BLOCKS_NAME noise_blocks_avx2
#define NOISE_BACKWARD_NAME backward_chunk_avx2
#define NOISE_RANGE_NAME range_avx2
#define NOISE_FACTORS_NAME group_factors_avx2
#define NOISE_BITS_NAME bits_sum_avx2
#define NOISE_BITS_GRAD_NAME bits_sum_grad_avx2
#include "noise_blocks.inc"
