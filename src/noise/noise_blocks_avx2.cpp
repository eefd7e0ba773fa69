// Noise block generator, AVX2 + FMA build (chosen at run time when available).
#define NOISE_BLOCKS_NAME noise_blocks_avx2
#include "noise_blocks.inc"
