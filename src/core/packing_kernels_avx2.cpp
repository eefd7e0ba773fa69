// Packing kernels compiled with -mavx2 (selected at run time when the CPU has AVX2).
#if defined(__x86_64__) || defined(__i386__)
#define DIFFQ_KERNEL_NS avx2
#include "packing_kernels.inc"
#endif
