// Packing kernels for the baseline instruction set.
#define DIFFQ_KERNEL_NS generic
#include "packing_kernels.inc"
