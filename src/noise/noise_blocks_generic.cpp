// Noise block generator, portable build.
#define NOISE_BLOCKS_NAME noise_blocks_generic
#include "noise_blocks.inc"
