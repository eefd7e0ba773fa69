#pragma once
/// \file packing.h
/// Bit-packing of quantization levels (torch-free).
///
/// A stream of `count` values packed at `bits` bits stores value `i` in bits
/// `[i*bits, (i+1)*bits)`, where bit `k` is bit `k % 64` of the
/// little-endian 64-bit word `k / 64` (LSB first; values may straddle words).
/// The stream is padded with zero bits to a whole number of 64-bit words, so
/// padding is always below one word. `bits` ranges over 0..16; at 0 bits the
/// stream is empty and every value is 0. See docs/format.md, section 3.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace diffq {

/// Bytes of a stream of `count` values packed at `bits` bits (a multiple of
/// 8). Throws `diffq::Error` when `bits` is outside 0..16 or on overflow.
size_t packed_size(size_t count, int bits);

/// Packs `count` values at `bits` bits into `out`, which must hold
/// `packed_size(count, bits)` bytes. Bits of a value above `bits` are
/// ignored. `threads` is the number of threads to use for large inputs
/// (0 = all hardware threads, 1 = the calling thread only).
void pack(const uint16_t* values, size_t count, int bits, uint8_t* out, int threads = 0);

/// Unpacks `count` values of `bits` bits from `packed`, which holds
/// `packed_size(count, bits)` bytes, into `out`. `threads` as for `pack`.
void unpack(const uint8_t* packed, size_t count, int bits, uint16_t* out, int threads = 0);

/// Packs `values` at `bits` bits and returns the stream.
std::vector<uint8_t> pack(const std::vector<uint16_t>& values, int bits, int threads = 0);

/// Unpacks `count` values of `bits` bits from `packed`; throws
/// `diffq::Error` when `packed` does not have exactly
/// `packed_size(count, bits)` bytes.
std::vector<uint16_t> unpack(const std::vector<uint8_t>& packed, size_t count, int bits,
                             int threads = 0);

/// True when the padding bits after the last value of a packed stream (of
/// `packed_size(count, bits)` bytes) are all zero, as writers must leave them.
bool padding_is_zero(const uint8_t* packed, size_t count, int bits);

/// Number of bits needed to write `value` (0 for 0, 1 for 1, 2 for 2..3, ...).
int bit_length(uint32_t value);

}  // namespace diffq
