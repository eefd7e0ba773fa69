// Noise block generator, portable build.
#define NOISE_BLOCKS_NAME noise_blocks_generic
#define NOISE_BACKWARD_NAME backward_chunk_generic
#define NOISE_RANGE_NAME range_generic
#define NOISE_FACTORS_NAME group_factors_generic
#define NOISE_BITS_NAME bits_sum_generic
#define NOISE_BITS_GRAD_NAME bits_sum_grad_generic
#include "noise_blocks.inc"
