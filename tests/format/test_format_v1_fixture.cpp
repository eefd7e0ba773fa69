// Version-1 files written by the version-1 writer (committed fixture bytes)
// still load, to exactly the state their deterministic factory rebuilds.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "diffq/format.h"
#include "state_factory.h"
#include "v1_fixture.h"

namespace {

using diffq::EntropyCoding;

std::vector<uint8_t> read_fixture(const std::string& name) {
  const std::string path = std::string(DIFFQ_FIXTURE_DIR) + "/" + name;
  std::FILE* in = std::fopen(path.c_str(), "rb");
  EXPECT_NE(in, nullptr) << "missing fixture " << path;
  std::vector<uint8_t> bytes;
  if (in == nullptr) return bytes;
  int c;
  while ((c = std::fgetc(in)) != EOF) bytes.push_back(static_cast<uint8_t>(c));
  std::fclose(in);
  return bytes;
}

class V1Fixture : public testing::TestWithParam<EntropyCoding> {};

TEST_P(V1Fixture, LoadsToTheFactoryState) {
  const auto bytes = read_fixture(diffq_test::v1_fixture_name(GetParam()));
  ASSERT_GT(bytes.size(), 40u);
  ASSERT_EQ(bytes[8], 1) << "the fixture must stay a version-1 file";
  const diffq::QuantizedState expected = diffq_test::v1_fixture_state();
  const diffq::QuantizedState loaded = diffq::load_from_memory(bytes.data(), bytes.size());
  diffq_test::expect_identical(expected, loaded);
  for (size_t i = 0; i < loaded.tensors.size(); ++i) {
    const auto& r = loaded.tensors[i];
    EXPECT_EQ(r.kind, diffq::RecordKind::kParameter) << r.name;  // v1 records are parameters
    const std::vector<float> want = diffq::dequantize(expected.tensors[i]);
    const std::vector<float> got = diffq::dequantize(r);
    ASSERT_EQ(want.size(), got.size()) << r.name;
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_EQ(std::memcmp(&want[k], &got[k], 4), 0) << r.name << "[" << k << "]";
    }
  }
  // Spot checks of decoded values against the formulas, not only the factory.
  EXPECT_EQ(diffq::dequantize(loaded.tensors[1])[2], -2.25f);  // float32 bias
  EXPECT_EQ(diffq::dequantize(loaded.tensors[6])[0], (101 - 64) * 0.0123f);  // lsq scalar
  EXPECT_EQ(diffq::dequantize(loaded.tensors[8])[0],
            diffq::half_to_float(loaded.tensors[8].codebook[2 * loaded.tensors[8].levels[0]]));

  const diffq::FileInfo info = diffq::inspect_memory(bytes.data(), bytes.size());
  EXPECT_EQ(info.format_version, 1u);
  EXPECT_EQ(info.created_utc, "1970-01-01T00:00:00Z");
  EXPECT_EQ(info.method, "diffq");
  EXPECT_EQ(info.fingerprint, diffq_test::fingerprint_hex(expected, 1));  // v1 text, no kinds
  EXPECT_NE(info.fingerprint, diffq_test::fingerprint_hex(expected, 2));
  EXPECT_DOUBLE_EQ(info.true_bits, expected.true_bits());
}

TEST_P(V1Fixture, RewritesAsTheCurrentVersion) {
  const auto bytes = read_fixture(diffq_test::v1_fixture_name(GetParam()));
  const diffq::QuantizedState loaded = diffq::load_from_memory(bytes.data(), bytes.size());
  const auto again = diffq::serialize(loaded, diffq::SaveOptions().entropy_coding(GetParam()));
  EXPECT_EQ(again[8], diffq::kFormatVersion);
  EXPECT_EQ(diffq::inspect_memory(again.data(), again.size()).fingerprint,
            diffq_test::fingerprint_hex(loaded, diffq::kFormatVersion));
  diffq_test::expect_identical(loaded, diffq::load_from_memory(again.data(), again.size()));
}

INSTANTIATE_TEST_SUITE_P(AllCodings, V1Fixture,
                         testing::Values(EntropyCoding::kNone, EntropyCoding::kZstd,
                                         EntropyCoding::kRans),
                         [](const testing::TestParamInfo<EntropyCoding>& info) {
                           return std::string(diffq::entropy_coding_name(info.param));
                         });

}  // namespace
