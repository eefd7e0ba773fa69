// Bit-packing against a naive bit-by-bit reference, for every width and
// awkward lengths, single- and multi-threaded.
#include <gtest/gtest.h>

#include <random>

#include "diffq/error.h"
#include "diffq/packing.h"

namespace {

// Reference: value i at bits [i*b, (i+1)*b) of LSB-first 64-bit LE words.
std::vector<uint8_t> naive_pack(const std::vector<uint16_t>& values, int bits) {
  const size_t words = (values.size() * bits + 63) / 64;
  std::vector<uint64_t> w(words, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    for (int k = 0; k < bits; ++k) {
      const uint64_t bit = (values[i] >> k) & 1u;
      const size_t pos = i * bits + k;
      w[pos / 64] |= bit << (pos % 64);
    }
  }
  std::vector<uint8_t> out(words * 8);
  for (size_t j = 0; j < words; ++j) {
    for (int k = 0; k < 8; ++k) out[j * 8 + k] = static_cast<uint8_t>(w[j] >> (8 * k));
  }
  return out;
}

std::vector<uint16_t> random_values(size_t n, int bits, std::mt19937& rng) {
  std::vector<uint16_t> v(n);
  const uint32_t mask = bits == 0 ? 0 : (1u << bits) - 1u;
  for (auto& x : v) x = static_cast<uint16_t>(rng() & mask);
  return v;
}

const size_t kLengths[] = {0, 1, 2, 3, 7, 8, 9, 15, 17, 63, 64, 65, 127, 129, 1000, 4099};

TEST(Packing, MatchesNaiveReferenceForEveryWidthAndLength) {
  std::mt19937 rng(7);
  for (int bits = 0; bits <= 16; ++bits) {
    for (size_t n : kLengths) {
      SCOPED_TRACE(testing::Message() << bits << " bits, " << n << " values");
      const auto values = random_values(n, bits, rng);
      const auto packed = diffq::pack(values, bits, 1);
      ASSERT_EQ(packed, naive_pack(values, bits));
      EXPECT_EQ(packed.size(), diffq::packed_size(n, bits));
      EXPECT_LT(packed.size() * 8, n * bits + 64) << "padding must stay below one word";
      EXPECT_EQ(packed.size() % 8, 0u);
      EXPECT_TRUE(diffq::padding_is_zero(packed.data(), n, bits));
      ASSERT_EQ(diffq::unpack(packed, n, bits, 1), values);
    }
  }
}

TEST(Packing, MultiThreadedChunksAgreeWithSingleThread) {
  std::mt19937 rng(11);
  const size_t n = (size_t{3} << 20) + 37;  // several chunks plus a tail
  for (int bits : {1, 2, 3, 4, 5, 7, 8, 11, 15, 16}) {
    SCOPED_TRACE(testing::Message() << bits << " bits");
    const auto values = random_values(n, bits, rng);
    const auto single = diffq::pack(values, bits, 1);
    const auto multi = diffq::pack(values, bits, 4);
    ASSERT_EQ(single, multi);
    ASSERT_EQ(diffq::unpack(multi, n, bits, 3), values);
  }
}

TEST(Packing, IgnoresBitsAboveWidth) {
  const std::vector<uint16_t> noisy = {0xfff5, 0x0102, 0x8003};
  const std::vector<uint16_t> clean = {0x5, 0x2, 0x3};
  for (int bits = 3; bits <= 4; ++bits) {
    std::vector<uint16_t> masked = noisy;
    for (auto& v : masked) v &= (1u << bits) - 1u;
    EXPECT_EQ(diffq::pack(noisy, bits, 1), naive_pack(masked, bits));
  }
  EXPECT_EQ(diffq::unpack(diffq::pack(noisy, 4, 1), 3, 4, 1), clean);
}

TEST(Packing, DetectsNonZeroPadding) {
  std::vector<uint16_t> values = {1, 2, 3};
  auto packed = diffq::pack(values, 3, 1);
  ASSERT_EQ(packed.size(), 8u);
  packed[7] = 0x80;
  EXPECT_FALSE(diffq::padding_is_zero(packed.data(), 3, 3));
  packed[7] = 0;
  packed[1] = 0x02;  // bit 9: just past the 9 used bits
  EXPECT_FALSE(diffq::padding_is_zero(packed.data(), 3, 3));
}

TEST(Packing, RejectsBadWidthAndSize) {
  EXPECT_THROW(diffq::packed_size(10, 17), diffq::Error);
  EXPECT_THROW(diffq::packed_size(10, -1), diffq::Error);
  EXPECT_THROW(diffq::unpack(std::vector<uint8_t>(7), 10, 5), diffq::Error);
}

TEST(Packing, BitLength) {
  for (uint32_t v = 0; v < 70000; v += 7) {
    const int b = diffq::bit_length(v);
    EXPECT_TRUE(v < (uint64_t{1} << b));
    EXPECT_TRUE(b == 0 || v >= (1u << (b - 1)));
  }
}

}  // namespace
