// Model files round trip bit for bit for every encoding, bit-width, group
// size and coding; inspect reports what is stored.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "diffq/error.h"
#include "diffq/format.h"
#include "state_factory.h"

namespace {

using diffq::EntropyCoding;
using diffq::QuantizedState;
using namespace diffq_test;

const EntropyCoding kCodings[] = {EntropyCoding::kNone, EntropyCoding::kZstd,
                                  EntropyCoding::kRans, EntropyCoding::kAuto};

void expect_round_trip(const QuantizedState& state) {
  for (EntropyCoding coding : kCodings) {
    SCOPED_TRACE(std::string("coding ") + diffq::entropy_coding_name(coding));
    const auto bytes = diffq::serialize(state, diffq::SaveOptions().entropy_coding(coding));
    expect_identical(state, diffq::load_from_memory(bytes.data(), bytes.size()));
  }
}

QuantizedState single(diffq::TensorRecord record) {
  QuantizedState state;
  state.method = "test";
  state.tensors.push_back(std::move(record));
  return state;
}

TEST(FormatRoundTrip, UniformAndLsqAtEveryBitWidth) {
  std::mt19937 rng(1);
  for (int bits = 1; bits <= 16; ++bits) {
    SCOPED_TRACE(testing::Message() << bits << " bits");
    QuantizedState state;
    state.method = "uniform";
    state.tensors.push_back(uniform_record("u", {7, 13}, bits, rng));
    state.tensors.push_back(lsq_record("l", {1, 101}, bits, rng));
    state.tensors.push_back(uniform_record("u1", {1}, bits, rng));
    state.tensors.push_back(lsq_record("l0", {}, bits, rng));
    state.tensors.push_back(uniform_record("ue", {0}, bits, rng));
    expect_round_trip(state);
  }
}

TEST(FormatRoundTrip, DiffQGroupsAtEveryWidthAndGroupSize) {
  std::mt19937 rng(2);
  for (int bits = 1; bits <= 16; ++bits) {
    for (int64_t group_size : {0, 1, 8, 16, 3}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, group size " << group_size);
      const int64_t groups = 11;  // odd number of groups
      const int64_t n = group_size == 0 ? 37 : group_size * groups;
      QuantizedState state;
      state.method = "diffq";
      state.tensors.push_back(diffq_record("same", {n}, group_size, {bits}, rng));
      state.tensors.push_back(diffq_record("mixed", {n}, group_size, {bits, 1 + (bits * 7) % 16, 15}, rng));
      expect_round_trip(state);
    }
  }
}

TEST(FormatRoundTrip, DiffQEdgeShapes) {
  std::mt19937 rng(3);
  QuantizedState state;
  state.method = "diffq";
  state.tensors.push_back(diffq_record("empty0", {0}, 0, {4}, rng));
  state.tensors.push_back(diffq_record("empty8", {0, 4}, 8, {4}, rng));
  state.tensors.push_back(diffq_record("one", {1}, 1, {15}, rng));
  state.tensors.push_back(diffq_record("scalar", {}, 0, {16}, rng));
  state.tensors.push_back(diffq_record("all", {4, 4, 4}, 1, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, rng));
  expect_round_trip(state);
}

TEST(FormatRoundTrip, ProductQuantizationAtEveryIndexWidth) {
  std::mt19937 rng(4);
  for (int64_t k : {1, 2, 3, 4, 5, 16, 17, 255, 256, 1000, 4096}) {
    SCOPED_TRACE(testing::Message() << k << " centroids");
    expect_round_trip(single(pq_record("pq", 33, 3, k, rng)));
  }
  expect_round_trip(single(pq_record("pq_wide", 70, 1, 65536, rng)));
  expect_round_trip(single(pq_record("pq_empty", 0, 4, 8, rng)));
}

TEST(FormatRoundTrip, FloatEncodingsAndDtypes) {
  std::mt19937 rng(5);
  QuantizedState state;
  state.method = "float";
  state.tensors.push_back(float32_record("a", {3, 5, 7}, rng));
  state.tensors.push_back(float16_record("b", {9}, rng));
  state.tensors.push_back(float32_record("s", {}, rng));
  state.tensors.push_back(float16_record("e", {2, 0}, rng));
  state.tensors.back().dtype = diffq::DType::kBFloat16;
  state.tensors.push_back(float32_record("d", {1}, rng));
  state.tensors.back().dtype = diffq::DType::kFloat64;
  state.tensors[0].values_f32[1] = std::numeric_limits<float>::quiet_NaN();
  state.tensors[0].values_f32[2] = -std::numeric_limits<float>::infinity();
  expect_round_trip(state);
}

TEST(FormatRoundTrip, EmptyStateAndMixedState) {
  QuantizedState empty;
  expect_round_trip(empty);
  expect_round_trip(mixed_state(42));
}

TEST(FormatRoundTrip, IsReproducibleWithFixedTime) {
  const QuantizedState state = mixed_state(1);
  const auto options = diffq::SaveOptions().creation_time(1700000000);
  EXPECT_EQ(diffq::serialize(state, options), diffq::serialize(state, options));
  const auto later = diffq::serialize(state, diffq::SaveOptions().creation_time(1800000000));
  EXPECT_NE(diffq::serialize(state, options), later);
  expect_identical(state, diffq::load_from_memory(later.data(), later.size()));
}

TEST(FormatRoundTrip, FingerprintFollowsArchitectureNotValues) {
  const QuantizedState a = mixed_state(1);
  const QuantizedState b = mixed_state(2);  // same names and shapes, other values
  EXPECT_EQ(diffq::model_fingerprint(a), diffq::model_fingerprint(b));
  QuantizedState renamed = a;
  renamed.tensors[1].name = "layers.0.bias2";
  EXPECT_NE(diffq::model_fingerprint(a), diffq::model_fingerprint(renamed));
  QuantizedState reshaped = a;
  reshaped.tensors[0].shape = {4, 6};
  EXPECT_NE(diffq::model_fingerprint(a), diffq::model_fingerprint(reshaped));
}

TEST(FormatRoundTrip, EntropyCodingShrinksBellShapedLevels) {
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.f, 1.f);
  diffq::TensorRecord r = uniform_record("w", {256, 256}, 6, rng);
  for (auto& level : r.levels) {
    level = static_cast<uint16_t>(std::clamp(std::nearbyint(31.5f + 7.f * normal(rng)), 0.f, 63.f));
  }
  const QuantizedState state = single(r);
  const size_t none = diffq::serialize(state).size();
  const size_t rans = diffq::serialize(state, diffq::SaveOptions().entropy_coding(EntropyCoding::kRans)).size();
  const size_t best = diffq::serialize(state, diffq::SaveOptions().entropy_coding(EntropyCoding::kAuto)).size();
  EXPECT_LT(rans, none * 5 / 6) << "about one bit of six saved";
  EXPECT_LE(best, rans);
}

TEST(FormatFile, SaveLoadAndInspect) {
  const std::string path = testing::TempDir() + "/diffq_format_inspect.dq";
  const QuantizedState state = mixed_state(7);
  diffq::save(state, path, diffq::SaveOptions().entropy_coding(EntropyCoding::kAuto));
  expect_identical(state, diffq::load(path));
  const diffq::FileInfo info = diffq::inspect(path);
  EXPECT_EQ(info.format_version, diffq::kFormatVersion);
  EXPECT_EQ(info.method, state.method);
  EXPECT_EQ(info.options, state.options);
  EXPECT_EQ(info.tensors.size(), state.tensors.size());
  EXPECT_EQ(info.created_utc.size(), 20u);
  EXPECT_EQ(info.created_utc.back(), 'Z');
  EXPECT_DOUBLE_EQ(info.true_bits, state.true_bits());
  std::FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::fseek(f, 0, SEEK_END);
  EXPECT_EQ(info.file_bytes, static_cast<uint64_t>(std::ftell(f)));
  std::fclose(f);
  uint64_t stored = 0;
  int64_t quantized = 0;
  for (size_t i = 0; i < info.tensors.size(); ++i) {
    const auto& t = info.tensors[i];
    const auto& r = state.tensors[i];
    EXPECT_EQ(t.name, r.name);
    EXPECT_EQ(t.shape, r.shape);
    EXPECT_EQ(t.numel, r.numel());
    stored += t.stored_bytes;
    int64_t counted = 0;
    for (int64_t c : t.bits_histogram) counted += c;
    if (r.encoding == diffq::Encoding::kDiffQGroups) {
      EXPECT_EQ(counted, r.numel());
      for (int b = 1; b <= 16; ++b) {
        int64_t expected = 0;
        for (uint8_t g : r.group_bits) expected += g == b ? r.group_size : 0;
        EXPECT_EQ(t.bits_histogram[b], expected) << "width " << b;
      }
    }
    quantized += counted;
  }
  EXPECT_EQ(stored, info.total_stored_bytes);
  EXPECT_LT(info.header_bytes + stored, info.file_bytes + 1);
  int64_t histogram_total = 0;
  for (int64_t c : info.bits_histogram) histogram_total += c;
  EXPECT_EQ(histogram_total, quantized);
  std::remove(path.c_str());
}

TEST(FormatFile, SaveRefusesInvalidStateWithoutWriting) {
  const std::string path = testing::TempDir() + "/diffq_format_invalid.dq";
  std::remove(path.c_str());
  QuantizedState state = mixed_state(8);
  state.tensors[3].levels[0] = 0xffff;  // does not fit on 5 bits
  EXPECT_THROW(diffq::save(state, path), diffq::Error);
  EXPECT_EQ(std::fopen(path.c_str(), "rb"), nullptr);
  EXPECT_THROW(diffq::load(path), diffq::Error);
}

}  // namespace
