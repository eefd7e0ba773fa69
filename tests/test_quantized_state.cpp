// Tests of the in-memory quantized state: validation, dequantization, size
// accounting (spec section 5) and half-precision conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "diffq/error.h"
#include "diffq/quantized_state.h"

namespace {

using diffq::DType;
using diffq::Encoding;
using diffq::TensorRecord;

TensorRecord float_record(const std::string& name, std::vector<int64_t> shape) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = Encoding::kFloat32;
  r.values_f32.assign(static_cast<size_t>(r.numel()), 0.5f);
  return r;
}

TensorRecord diffq_record(const std::string& name, std::vector<int64_t> shape, int64_t group_size,
                          int bits) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = Encoding::kDiffQGroups;
  r.group_size = group_size;
  r.min_bits = 2;
  r.min = -1.f;
  r.max = 1.f;
  const int64_t n = r.numel();
  r.group_bits.assign(static_cast<size_t>(group_size == 0 ? 1 : n / group_size),
                      static_cast<uint8_t>(bits));
  r.levels.assign(static_cast<size_t>(n), 0);
  return r;
}

TensorRecord uniform_record(const std::string& name, std::vector<int64_t> shape, int bits) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = Encoding::kUniform;
  r.bits = bits;
  r.min = -1.f;
  r.max = 1.f;
  r.levels.assign(static_cast<size_t>(r.numel()), 0);
  return r;
}

// The spec's Linear(1024, 512) reference sizes, defaults, 8 bits at init.
double linear_mib(int64_t group_size) {
  diffq::QuantizedState state;
  state.tensors.push_back(diffq_record("weight", {512, 1024}, group_size, 8));
  state.tensors.push_back(float_record("bias", {512}));
  return state.true_mib();
}

TEST(TrueBits, MatchesSpecReferenceForLinear) {
  EXPECT_NEAR(linear_mib(0), 0.501962066, 1e-9);
  EXPECT_NEAR(linear_mib(1), 0.689461708, 1e-9);
  EXPECT_NEAR(linear_mib(8), 0.525399208, 1e-9);
  EXPECT_NEAR(linear_mib(16), 0.513680458, 1e-9);
}

TEST(TrueBits, MatchesSpecReferenceForUniformCnn) {
  // Conv2d(1,32,3) -> Conv2d(32,64,3) -> Linear(3136,256) -> Linear(256,10);
  // tensors of at most 2621 elements stay float32.
  diffq::QuantizedState state;
  state.tensors.push_back(float_record("c1.w", {32, 1, 3, 3}));
  state.tensors.push_back(float_record("c1.b", {32}));
  state.tensors.push_back(uniform_record("c2.w", {64, 32, 3, 3}, 4));
  state.tensors.push_back(float_record("c2.b", {64}));
  state.tensors.push_back(uniform_record("f1.w", {256, 3136}, 4));
  state.tensors.push_back(float_record("f1.b", {256}));
  state.tensors.push_back(float_record("f2.w", {10, 256}));
  state.tensors.push_back(float_record("f2.b", {10}));
  EXPECT_NEAR(state.true_mib(), 0.403862000, 1e-9);
}

TEST(TrueBits, CountsLsqWithOneFloat) {
  diffq::QuantizedState state;
  TensorRecord r = uniform_record("w", {100}, 3);
  r.encoding = Encoding::kLSQ;
  r.step = 0.1f;
  state.tensors.push_back(r);
  EXPECT_DOUBLE_EQ(state.true_bits(), 3 * 100 + 32);
}

TEST(Validate, AcceptsConsistentRecords) {
  diffq::QuantizedState state;
  state.tensors.push_back(diffq_record("a", {4, 8}, 8, 3));
  state.tensors.push_back(uniform_record("b", {}, 16));
  state.tensors.push_back(float_record("c", {0, 5}));
  EXPECT_NO_THROW(diffq::validate(state));
}

TEST(Validate, RejectsLevelAboveBitWidth) {
  TensorRecord r = uniform_record("w", {10}, 3);
  r.levels[7] = 8;
  EXPECT_THROW(diffq::validate(r), diffq::Error);
}

TEST(Validate, RejectsGroupSizeNotDividing) {
  TensorRecord r = diffq_record("w", {12}, 4, 3);
  r.group_size = 5;
  EXPECT_THROW(diffq::validate(r), diffq::Error);
}

TEST(Validate, RejectsBitWidthOutOfRange) {
  TensorRecord r = uniform_record("w", {3}, 3);
  r.bits = 17;
  EXPECT_THROW(diffq::validate(r), diffq::Error);
  TensorRecord g = diffq_record("g", {8}, 4, 3);
  g.group_bits[1] = 0;
  EXPECT_THROW(diffq::validate(g), diffq::Error);
}

TEST(Validate, RejectsWrongPayloadLength) {
  TensorRecord r = float_record("w", {3, 3});
  r.values_f32.pop_back();
  EXPECT_THROW(diffq::validate(r), diffq::Error);
}

TEST(Validate, RejectsDuplicateNamesAndAliases) {
  diffq::QuantizedState state;
  state.tensors.push_back(float_record("a", {2}));
  state.tensors.push_back(float_record("b", {2}));
  state.tensors[1].aliases = {"a"};
  EXPECT_THROW(diffq::validate(state), diffq::Error);
}

TEST(Validate, RejectsPqIndexOutOfCodebook) {
  TensorRecord r;
  r.name = "pq";
  r.shape = {8};
  r.encoding = Encoding::kProductQuantized;
  r.block_size = 4;
  r.num_centroids = 3;
  r.codebook.assign(12, 0);
  r.levels = {0, 2};
  EXPECT_NO_THROW(diffq::validate(r));
  r.levels[1] = 3;
  EXPECT_THROW(diffq::validate(r), diffq::Error);
}

TEST(Dequantize, UniformFollowsFormula) {
  TensorRecord r = uniform_record("w", {4}, 2);
  r.min = -1.f;
  r.max = 2.f;
  r.levels = {0, 1, 2, 3};
  const std::vector<float> w = diffq::dequantize(r);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i], static_cast<float>(i) / 3.f * 3.f + -1.f);
  }
  EXPECT_EQ(w[0], r.min);
  EXPECT_EQ(w[3], r.max);
}

TEST(Dequantize, DiffQUsesEachGroupsWidth) {
  TensorRecord r = diffq_record("w", {4}, 2, 1);
  r.group_bits = {1, 2};
  r.levels = {1, 0, 3, 1};
  const std::vector<float> w = diffq::dequantize(r);
  EXPECT_EQ(w[0], 1.f);
  EXPECT_EQ(w[1], -1.f);
  EXPECT_EQ(w[2], 1.f);
  EXPECT_FLOAT_EQ(w[3], -1.f + 2.f / 3.f);
}

TEST(Dequantize, LsqIsSignedLevelTimesStep) {
  TensorRecord r = uniform_record("w", {3}, 3);
  r.encoding = Encoding::kLSQ;
  r.step = 0.25f;
  r.levels = {0, 4, 7};
  const std::vector<float> w = diffq::dequantize(r);
  EXPECT_EQ(w[0], -4 * 0.25f);
  EXPECT_EQ(w[1], 0.f);
  EXPECT_EQ(w[2], 3 * 0.25f);
}

TEST(Dequantize, PqCopiesCentroids) {
  TensorRecord r;
  r.name = "pq";
  r.shape = {2, 2};
  r.encoding = Encoding::kProductQuantized;
  r.block_size = 2;
  r.num_centroids = 2;
  r.codebook = {diffq::float_to_half(1.f), diffq::float_to_half(2.f), diffq::float_to_half(-3.f),
                diffq::float_to_half(0.5f)};
  r.levels = {1, 0};
  EXPECT_EQ(diffq::dequantize(r), (std::vector<float>{-3.f, 0.5f, 1.f, 2.f}));
}

TensorRecord per_channel_record(const std::string& name, std::vector<int64_t> shape, int bits) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = Encoding::kPerChannelUniform;
  r.bits = bits;
  r.channel_min.assign(static_cast<size_t>(r.channel_count()), -1.f);
  r.channel_max.assign(static_cast<size_t>(r.channel_count()), 1.f);
  r.levels.assign(static_cast<size_t>(r.numel()), 0);
  return r;
}

TensorRecord integer_record(const std::string& name, std::vector<int64_t> shape, DType dtype) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = Encoding::kInteger;
  r.dtype = dtype;
  r.values_i64.assign(static_cast<size_t>(r.numel()), 1);
  return r;
}

TEST(PerChannel, DequantizesEachChannelWithItsRange) {
  TensorRecord r = per_channel_record("w", {2, 3}, 2);
  r.channel_min = {-0.7f, 0.25f};
  r.channel_max = {0.7f, 0.25f};  // second channel: empty range
  r.levels = {0, 1, 3, 0, 2, 3};
  const std::vector<float> w = diffq::dequantize(r);
  const float range = 0.7f - -0.7f;
  EXPECT_EQ(w[0], -0.7f);
  EXPECT_EQ(w[1], 1.f / 3.f * range + -0.7f);
  EXPECT_EQ(w[2], 3.f / 3.f * range + -0.7f);
  for (int i = 3; i < 6; ++i) EXPECT_EQ(w[i], 0.25f);
  // A range starting at dequantize_range's chunk boundaries gives the same values.
  std::vector<float> part(4);
  diffq::dequantize_range(r, 2, 6, part.data());
  EXPECT_EQ(std::vector<float>(w.begin() + 2, w.end()), part);
}

TEST(PerChannel, CountsChannelsAlongDimensionZero) {
  EXPECT_EQ(per_channel_record("a", {4, 3, 2}, 3).channel_count(), 4);
  EXPECT_EQ(per_channel_record("a", {4, 3, 2}, 3).channel_extent(), 6);
  EXPECT_EQ(per_channel_record("s", {}, 3).channel_count(), 1);
  EXPECT_EQ(per_channel_record("e", {0, 3}, 3).channel_extent(), 0);
  EXPECT_EQ(uniform_record("u", {4, 3}, 3).channel_count(), 0);
}

TEST(PerChannel, ValidationNamesTheProblem) {
  TensorRecord r = per_channel_record("fc.weight", {3, 2}, 4);
  EXPECT_NO_THROW(diffq::validate(r));
  auto message = [](const TensorRecord& bad) {
    try {
      diffq::validate(bad);
    } catch (const diffq::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  TensorRecord fewer = r;
  fewer.channel_min.pop_back();
  fewer.channel_max.pop_back();
  EXPECT_EQ(message(fewer), "tensor 'fc.weight': channel ranges has 2 entries, expected 3");
  TensorRecord nan = r;
  nan.channel_min[2] = std::nanf("");
  EXPECT_NE(message(nan).find("invalid range of channel 2"), std::string::npos);
  TensorRecord level = r;
  level.levels[1] = 16;
  EXPECT_NE(message(level).find("level 16 at index 1 does not fit on 4 bits"), std::string::npos);
  TensorRecord bits = r;
  bits.bits = 0;
  EXPECT_NE(message(bits).find("bit-width 0 outside 1..16"), std::string::npos);
}

TEST(PerChannel, TrueSizeIsBitsPlusTwoFloatsPerChannel) {
  const TensorRecord r = per_channel_record("w", {8, 16}, 4);
  EXPECT_DOUBLE_EQ(r.payload_bits(), 4.0 * 128);
  EXPECT_DOUBLE_EQ(r.true_bits(), 4.0 * 128 + 64 * 8);
}

TEST(Integer, ValuesMustFitTheirDtype) {
  for (DType dtype : {DType::kInt64, DType::kInt32, DType::kInt16, DType::kInt8, DType::kUInt8,
                      DType::kBool}) {
    SCOPED_TRACE(diffq::dtype_name(dtype));
    TensorRecord r = integer_record("n", {2}, dtype);
    r.values_i64 = {diffq::integer_min(dtype), diffq::integer_max(dtype)};
    EXPECT_NO_THROW(diffq::validate(r));
    if (dtype != DType::kInt64) {
      r.values_i64[1] = diffq::integer_max(dtype) + 1;
      EXPECT_THROW(diffq::validate(r), diffq::Error);
      r.values_i64[1] = diffq::integer_min(dtype) - 1;
      EXPECT_THROW(diffq::validate(r), diffq::Error);
    }
    EXPECT_DOUBLE_EQ(r.payload_bits(), 2.0 * 8 * diffq::integer_width(dtype));
  }
  EXPECT_EQ(diffq::integer_width(DType::kFloat32), 0);
  EXPECT_EQ(diffq::dequantize(integer_record("c", {3}, DType::kInt64)), (std::vector<float>{1, 1, 1}));
}

TEST(Kinds, ParameterSizesExcludeBuffers) {
  diffq::QuantizedState state;
  state.tensors.push_back(uniform_record("w", {100}, 3));
  state.tensors.push_back(float_record("running_mean", {10}));
  state.tensors.back().kind = diffq::RecordKind::kBuffer;
  state.tensors.push_back(integer_record("num_batches_tracked", {}, DType::kInt64));
  state.tensors.back().kind = diffq::RecordKind::kBuffer;
  EXPECT_DOUBLE_EQ(state.true_bits(), 3 * 100 + 64);
  EXPECT_DOUBLE_EQ(state.buffer_bits(), 32 * 10 + 64);
  EXPECT_EQ(state.parameter_count(), 100);
  EXPECT_DOUBLE_EQ(state.mean_bits(), 3.0);
  EXPECT_EQ(diffq::parse_record_kind("buffer"), diffq::RecordKind::kBuffer);
  EXPECT_THROW(diffq::parse_record_kind("buffers"), diffq::Error);
  EXPECT_EQ(diffq::parse_dtype("uint8"), DType::kUInt8);
  EXPECT_EQ(diffq::parse_encoding("per_channel"), Encoding::kPerChannelUniform);
}

TEST(Half, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = diffq::half_to_float(static_cast<uint16_t>(h));
    const uint16_t back = diffq::float_to_half(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(diffq::half_to_float(back))) << h;
    } else {
      ASSERT_EQ(back, h) << "pattern " << h;
    }
  }
}

// Nearest half by search over the ordered positive patterns, ties to even.
uint16_t reference_half(float value) {
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const double x = std::fabs(static_cast<double>(value));
  if (std::isnan(value)) return sign | 0x7e00;
  if (x >= 65520.0) return sign | 0x7c00;
  uint32_t lo = 0, hi = 0x7bff;  // largest finite half
  while (lo < hi) {              // last pattern whose value <= x
    const uint32_t mid = (lo + hi + 1) / 2;
    if (diffq::half_to_float(static_cast<uint16_t>(mid)) <= x) lo = mid; else hi = mid - 1;
  }
  if (lo == 0x7bff) return sign | 0x7bff;
  const double below = diffq::half_to_float(static_cast<uint16_t>(lo));
  const double above = diffq::half_to_float(static_cast<uint16_t>(lo + 1));
  uint32_t pick = lo;
  if (x - below > above - x || (x - below == above - x && (lo & 1u))) pick = lo + 1;
  return sign | static_cast<uint16_t>(pick);
}

TEST(Half, FloatToHalfRoundsToNearestEven) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::uniform_real_distribution<float> exponent(-26.f, 17.f);
  for (int i = 0; i < 200000; ++i) {
    float f;
    if (i % 2 == 0) {
      const uint32_t bits = any_bits(rng);
      std::memcpy(&f, &bits, sizeof(f));
      if (std::isnan(f)) continue;
    } else {  // concentrate on the half range, including subnormals
      f = std::ldexp(1.f + (any_bits(rng) >> 9) * 0x1p-23f, static_cast<int>(exponent(rng)));
      if (any_bits(rng) & 1u) f = -f;
    }
    ASSERT_EQ(diffq::float_to_half(f), reference_half(f)) << "value " << f;
  }
}

TEST(Half, HalfwayCasesRoundToEven) {
  // 1 + 2^-11 lies halfway between 1 and the next half 1 + 2^-10.
  EXPECT_EQ(diffq::float_to_half(1.f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(diffq::float_to_half(1.f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(diffq::float_to_half(65520.f), 0x7c00);
  EXPECT_EQ(diffq::float_to_half(65519.f), 0x7bff);
}

}  // namespace
