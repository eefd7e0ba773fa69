#pragma once
// Internal: the packing kernels of each instruction set (packing_kernels.inc).
#include <cstddef>
#include <cstdint>

namespace diffq {
namespace detail {
namespace generic {
void pack_whole_groups(const uint16_t* in, size_t count, int bits, uint8_t* out);
void unpack_whole_groups(const uint8_t* in, size_t count, int bits, uint16_t* out);
}  // namespace generic
#if defined(__x86_64__) || defined(__i386__)
#define DIFFQ_HAVE_AVX2_KERNELS 1
namespace avx2 {
void pack_whole_groups(const uint16_t* in, size_t count, int bits, uint8_t* out);
void unpack_whole_groups(const uint8_t* in, size_t count, int bits, uint16_t* out);
}  // namespace avx2
#endif
}  // namespace detail
}  // namespace diffq
