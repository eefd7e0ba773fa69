#pragma once
// Builders of random quantized states for the format tests, and a bit-exact
// comparison of states.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "diffq/format.h"
#include "diffq/quantized_state.h"

namespace diffq_test {

/// Float32 record with random values (including negative zero).
diffq::TensorRecord float32_record(const std::string& name, std::vector<int64_t> shape,
                                   std::mt19937& rng);
/// Float16 record with random bit patterns.
diffq::TensorRecord float16_record(const std::string& name, std::vector<int64_t> shape,
                                   std::mt19937& rng);
/// Uniform record with random levels on `bits`.
diffq::TensorRecord uniform_record(const std::string& name, std::vector<int64_t> shape, int bits,
                                   std::mt19937& rng);
/// LSQ record with random levels on `bits`.
diffq::TensorRecord lsq_record(const std::string& name, std::vector<int64_t> shape, int bits,
                               std::mt19937& rng);
/// DiffQ record whose group widths are drawn from `widths`.
diffq::TensorRecord diffq_record(const std::string& name, std::vector<int64_t> shape,
                                 int64_t group_size, const std::vector<int>& widths,
                                 std::mt19937& rng);
/// Product-quantized record of `blocks` subvectors of `block_size`, K centroids.
diffq::TensorRecord pq_record(const std::string& name, int64_t blocks, int64_t block_size,
                              int64_t num_centroids, std::mt19937& rng);

/// Integer record of `dtype` with random values spanning the dtype's whole
/// range (its minimum and maximum included when there are 2+ elements).
diffq::TensorRecord integer_record(const std::string& name, std::vector<int64_t> shape,
                                   diffq::DType dtype, std::mt19937& rng);
/// Per-channel uniform record with random levels on `bits` and random
/// ranges (one channel with an empty range [c, c] when there are 2+).
diffq::TensorRecord per_channel_record(const std::string& name, std::vector<int64_t> shape,
                                       int bits, std::mt19937& rng);
/// `record` marked as a buffer.
diffq::TensorRecord as_buffer(diffq::TensorRecord record);

/// A small state with one record of every encoding, tied aliases and
/// options, float and integer buffers and a per-channel record (format v2).
diffq::QuantizedState mixed_state(uint32_t seed);

/// The model fingerprint of `state` (as defined by file format
/// `format_version`) as 16 lowercase hex digits, as in files.
std::string fingerprint_hex(const diffq::QuantizedState& state, uint32_t format_version);

/// Asserts (gtest) that two states are identical, floats bit for bit.
void expect_identical(const diffq::QuantizedState& a, const diffq::QuantizedState& b);

/// The error message of loading `bytes`, "" when it loads; fails the test
/// on any exception other than diffq::Error.
std::string load_error(const std::vector<uint8_t>& bytes,
                       const diffq::LoadOptions& options = diffq::LoadOptions());

/// The little-endian u64 at byte `at`.
uint64_t read_u64(const std::vector<uint8_t>& bytes, size_t at);
/// Recomputes the header checksum of a file's bytes (after an edit).
void fix_header_checksum(std::vector<uint8_t>& bytes);
/// Replaces `from` by `to` (same length) in the JSON header and fixes the
/// header checksum, so that the change reaches the validation logic.
std::vector<uint8_t> edit_header(std::vector<uint8_t> bytes, const std::string& from, const std::string& to);
/// The JSON header of a file's bytes.
nlohmann::json header_of(const std::vector<uint8_t>& bytes);

}  // namespace diffq_test
