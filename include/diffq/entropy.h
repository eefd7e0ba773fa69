#pragma once
/// \file entropy.h
/// Entropy coders used by the model file format (torch-free): a static rANS
/// coder designed for quantization levels, and zstd over bytes.
/// Byte layouts are specified in docs/format.md, section 4.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace diffq {

/// Encodes `count` values, each below 2^`bits` (`bits` in 1..16), with a
/// static rANS coder whose frequency table is the values' histogram.
/// Returns the stream of docs/format.md 4.1 (scale, alphabet, table, data).
std::vector<uint8_t> rans_encode(const uint16_t* values, size_t count, int bits);

/// Decodes `count` values of at most `bits` bits from the rANS stream that
/// starts at `data` (at most `size` bytes available) into `out`. Returns the
/// number of bytes the stream occupies. Throws `diffq::Error` on any
/// inconsistency (truncation, bad table, trailing state).
size_t rans_decode(const uint8_t* data, size_t size, size_t count, int bits, uint16_t* out);

/// The most values the rANS stream at `data` (at most `size` bytes) can
/// decode to, from its frequency table and data length alone (each value
/// costs at least log2 of the inverse of the largest probability, less the
/// coder's rounding), without decoding it; `UINT64_MAX` when one symbol has
/// every slot. Sets `stream_size` to the bytes the stream occupies. Throws
/// `diffq::Error` on a malformed header.
uint64_t rans_capacity(const uint8_t* data, size_t size, size_t& stream_size);

/// Compresses `size` bytes into one zstd frame at `level` (1..22).
std::vector<uint8_t> zstd_compress(const uint8_t* data, size_t size, int level);

/// Checks, without decompressing, that `size` bytes are exactly one zstd
/// frame that declares `expected_size` bytes and whose blocks can hold them
/// (at most 128 KiB per block). Throws `diffq::Error` otherwise. Run it
/// before allocating the output.
void zstd_check_frame(const uint8_t* data, size_t size, size_t expected_size);

/// Decompresses exactly one zstd frame of `size` bytes that must declare and
/// hold `expected_size` bytes, into `out` (of `expected_size` bytes).
/// Throws `diffq::Error` otherwise.
void zstd_decompress(const uint8_t* data, size_t size, uint8_t* out, size_t expected_size);

/// Empirical (zeroth-order) entropy of the values, in bits per value.
double empirical_entropy(const uint16_t* values, size_t count);

}  // namespace diffq
