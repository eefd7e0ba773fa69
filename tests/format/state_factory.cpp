// Builders of random quantized states for the format tests.
#include "state_factory.h"

#include <xxhash.h>

#include <cstring>

#include "diffq/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "diffq/format.h"

namespace diffq_test {

using diffq::Encoding;
using diffq::TensorRecord;

namespace {

TensorRecord base(const std::string& name, std::vector<int64_t> shape, Encoding encoding) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = encoding;
  return r;
}

std::vector<uint16_t> random_levels(size_t n, int bits, std::mt19937& rng) {
  std::vector<uint16_t> levels(n);
  for (auto& l : levels) l = static_cast<uint16_t>(rng() & ((1u << bits) - 1u));
  return levels;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

}  // namespace

TensorRecord float32_record(const std::string& name, std::vector<int64_t> shape, std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kFloat32);
  std::normal_distribution<float> normal(0.f, 1.f);
  r.values_f32.resize(static_cast<size_t>(r.numel()));
  for (auto& v : r.values_f32) v = normal(rng);
  if (!r.values_f32.empty()) r.values_f32[0] = -0.f;
  return r;
}

TensorRecord float16_record(const std::string& name, std::vector<int64_t> shape, std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kFloat16);
  r.dtype = diffq::DType::kFloat16;
  r.values_f16 = random_levels(static_cast<size_t>(r.numel()), 16, rng);
  return r;
}

TensorRecord uniform_record(const std::string& name, std::vector<int64_t> shape, int bits,
                            std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kUniform);
  r.bits = bits;
  r.min = -0.731f;
  r.max = 1.0f / 3.0f;
  r.levels = random_levels(static_cast<size_t>(r.numel()), bits, rng);
  return r;
}

TensorRecord lsq_record(const std::string& name, std::vector<int64_t> shape, int bits,
                        std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kLSQ);
  r.bits = bits;
  r.step = 0.0123f;
  r.levels = random_levels(static_cast<size_t>(r.numel()), bits, rng);
  return r;
}

TensorRecord diffq_record(const std::string& name, std::vector<int64_t> shape, int64_t group_size,
                          const std::vector<int>& widths, std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kDiffQGroups);
  r.group_size = group_size;
  r.min_bits = 2;
  r.min = -2.5f;
  r.max = 0.1f;
  const int64_t n = r.numel();
  const int64_t groups = group_size == 0 ? (n == 0 ? 0 : 1) : n / group_size;
  const int64_t extent = group_size == 0 ? n : group_size;
  r.levels.resize(static_cast<size_t>(n));
  for (int64_t g = 0; g < groups; ++g) {
    const int b = widths[rng() % widths.size()];
    r.group_bits.push_back(static_cast<uint8_t>(b));
    for (int64_t i = 0; i < extent; ++i) {
      r.levels[g * extent + i] = static_cast<uint16_t>(rng() & ((1u << b) - 1u));
    }
  }
  return r;
}

TensorRecord pq_record(const std::string& name, int64_t blocks, int64_t block_size,
                       int64_t num_centroids, std::mt19937& rng) {
  TensorRecord r = base(name, {blocks, block_size}, Encoding::kProductQuantized);
  r.block_size = block_size;
  r.num_centroids = num_centroids;
  r.codebook = random_levels(static_cast<size_t>(num_centroids * block_size), 16, rng);
  r.levels.resize(static_cast<size_t>(blocks));
  for (auto& l : r.levels) l = static_cast<uint16_t>(rng() % num_centroids);
  return r;
}

TensorRecord integer_record(const std::string& name, std::vector<int64_t> shape,
                            diffq::DType dtype, std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kInteger);
  r.dtype = dtype;
  const uint64_t lo = static_cast<uint64_t>(diffq::integer_min(dtype));
  const uint64_t span = static_cast<uint64_t>(diffq::integer_max(dtype)) - lo;  // wraps for int64
  r.values_i64.resize(static_cast<size_t>(r.numel()));
  for (auto& v : r.values_i64) {
    const uint64_t draw = (uint64_t{rng()} << 32) | rng();
    v = static_cast<int64_t>(lo + (span == ~uint64_t{0} ? draw : draw % (span + 1)));
  }
  if (r.values_i64.size() >= 2) {
    r.values_i64[0] = diffq::integer_min(dtype);
    r.values_i64[1] = diffq::integer_max(dtype);
  }
  return r;
}

TensorRecord per_channel_record(const std::string& name, std::vector<int64_t> shape, int bits,
                                std::mt19937& rng) {
  TensorRecord r = base(name, std::move(shape), Encoding::kPerChannelUniform);
  r.bits = bits;
  const size_t channels = static_cast<size_t>(r.channel_count());
  std::uniform_int_distribution<int> mantissa(-1000, 1000);
  for (size_t c = 0; c < channels; ++c) {
    const float a = static_cast<float>(mantissa(rng)) / 37.f;
    const float b = static_cast<float>(mantissa(rng)) / 41.f;
    r.channel_min.push_back(std::min(a, b));
    r.channel_max.push_back(c == 1 ? std::min(a, b) : std::max(a, b));
  }
  r.levels = random_levels(static_cast<size_t>(r.numel()), bits, rng);
  return r;
}

TensorRecord as_buffer(TensorRecord record) {
  record.kind = diffq::RecordKind::kBuffer;
  return record;
}

diffq::QuantizedState mixed_state(uint32_t seed) {
  std::mt19937 rng(seed);
  diffq::QuantizedState state;
  state.method = "diffq";
  state.options = {{"group_size", "8"}, {"min_bits", "2"}, {"note", "ünïcode ok"}};
  state.tensors.push_back(diffq_record("layers.0.weight", {6, 4}, 8, {2, 3, 15}, rng));
  state.tensors.back().aliases = {"head.weight"};
  state.tensors.push_back(float32_record("layers.0.bias", {5}, rng));
  state.tensors.push_back(float16_record("norm.weight", {3}, rng));
  state.tensors.push_back(uniform_record("conv.weight", {3, 3}, 5, rng));
  state.tensors.push_back(lsq_record("scalar", {}, 7, rng));
  state.tensors.push_back(pq_record("emb.weight", 5, 2, 3, rng));
  state.tensors.push_back(float32_record("empty", {0, 3}, rng));
  state.tensors.push_back(per_channel_record("fc.weight", {4, 6}, 6, rng));
  state.tensors.push_back(as_buffer(float32_record("bn.running_mean", {4}, rng)));
  state.tensors.push_back(as_buffer(float16_record("bn.running_var", {4}, rng)));
  state.tensors.push_back(as_buffer(integer_record("bn.num_batches_tracked", {}, diffq::DType::kInt64, rng)));
  state.tensors.push_back(as_buffer(integer_record("mask", {2, 5}, diffq::DType::kBool, rng)));
  state.tensors.push_back(as_buffer(integer_record("table", {7}, diffq::DType::kInt16, rng)));
  return state;
}

std::string fingerprint_hex(const diffq::QuantizedState& state, uint32_t format_version) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx",
                static_cast<unsigned long long>(diffq::model_fingerprint(state, format_version)));
  return text;
}

void expect_identical(const diffq::QuantizedState& a, const diffq::QuantizedState& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.options, b.options);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const TensorRecord& x = a.tensors[i];
    const TensorRecord& y = b.tensors[i];
    SCOPED_TRACE("tensor " + x.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.kind, y.kind);
    EXPECT_EQ(x.aliases, y.aliases);
    EXPECT_EQ(x.shape, y.shape);
    EXPECT_EQ(x.dtype, y.dtype);
    EXPECT_EQ(x.encoding, y.encoding);
    ASSERT_EQ(x.values_f32.size(), y.values_f32.size());
    EXPECT_TRUE(x.values_f32.empty() ||
                std::memcmp(x.values_f32.data(), y.values_f32.data(), x.values_f32.size() * 4) == 0);
    EXPECT_EQ(x.values_f16, y.values_f16);
    EXPECT_EQ(x.values_i64, y.values_i64);
    EXPECT_EQ(x.levels, y.levels);
    EXPECT_EQ(x.codebook, y.codebook);
    EXPECT_EQ(x.group_bits, y.group_bits);
    if (x.encoding == Encoding::kUniform || x.encoding == Encoding::kLSQ ||
        x.encoding == Encoding::kPerChannelUniform) {
      EXPECT_EQ(x.bits, y.bits);
    }
    ASSERT_EQ(x.channel_min.size(), y.channel_min.size());
    ASSERT_EQ(x.channel_max.size(), y.channel_max.size());
    for (size_t c = 0; c < x.channel_min.size(); ++c) {
      EXPECT_EQ(bits_of(x.channel_min[c]), bits_of(y.channel_min[c])) << "channel " << c;
      EXPECT_EQ(bits_of(x.channel_max[c]), bits_of(y.channel_max[c])) << "channel " << c;
    }
    if (x.encoding == Encoding::kUniform || x.encoding == Encoding::kDiffQGroups) {
      EXPECT_EQ(bits_of(x.min), bits_of(y.min));
      EXPECT_EQ(bits_of(x.max), bits_of(y.max));
    }
    if (x.encoding == Encoding::kLSQ) EXPECT_EQ(bits_of(x.step), bits_of(y.step));
    if (x.encoding == Encoding::kDiffQGroups) {
      EXPECT_EQ(x.group_size, y.group_size);
      EXPECT_EQ(x.min_bits, y.min_bits);
    }
    if (x.encoding == Encoding::kProductQuantized) {
      EXPECT_EQ(x.block_size, y.block_size);
      EXPECT_EQ(x.num_centroids, y.num_centroids);
    }
  }
}

std::string load_error(const std::vector<uint8_t>& bytes, const diffq::LoadOptions& options) {
  try {
    diffq::load_from_memory(bytes.data(), bytes.size(), options);
    return "";
  } catch (const diffq::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-diffq exception: " << e.what();
    return "other";
  }
}

uint64_t read_u64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

void fix_header_checksum(std::vector<uint8_t>& bytes) {
  const uint64_t length = read_u64(bytes, 16);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, bytes.data(), 32);
  XXH3_64bits_update(state, bytes.data() + 40, length);
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  for (int i = 0; i < 8; ++i) bytes[32 + i] = static_cast<uint8_t>(digest >> (8 * i));
}

std::vector<uint8_t> edit_header(std::vector<uint8_t> bytes, const std::string& from,
                                 const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  const uint64_t length = read_u64(bytes, 16);
  std::string header(bytes.begin() + 40, bytes.begin() + 40 + length);
  const size_t at = header.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at == std::string::npos) return bytes;
  header.replace(at, from.size(), to);
  std::memcpy(bytes.data() + 40, header.data(), header.size());
  fix_header_checksum(bytes);
  return bytes;
}

nlohmann::json header_of(const std::vector<uint8_t>& bytes) {
  const uint64_t length = read_u64(bytes, 16);
  return nlohmann::json::parse(bytes.begin() + 40, bytes.begin() + 40 + length);
}

}  // namespace diffq_test
