// rANS and zstd coding: round trips, efficiency on bell-shaped levels, and
// rejection of corrupt streams.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "diffq/entropy.h"
#include "diffq/error.h"

namespace {

// Uniform quantization (spec section 1) of Gaussian weights at `bits`.
std::vector<uint16_t> gaussian_levels(size_t n, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> w(n);
  for (auto& x : w) x = normal(rng);
  const float mn = *std::min_element(w.begin(), w.end());
  const float mx = *std::max_element(w.begin(), w.end());
  const float top = static_cast<float>((1u << bits) - 1u);
  std::vector<uint16_t> levels(n);
  for (size_t i = 0; i < n; ++i) {
    levels[i] = static_cast<uint16_t>(std::nearbyint((w[i] - mn) / (mx - mn) * top));
  }
  return levels;
}

std::vector<uint16_t> decode(const std::vector<uint8_t>& coded, size_t n, int bits) {
  std::vector<uint16_t> out(n);
  EXPECT_EQ(diffq::rans_decode(coded.data(), coded.size(), n, bits, out.data()), coded.size());
  return out;
}

TEST(Rans, RoundTripsGaussianLevelsNearEntropy) {
  for (int bits : {1, 2, 3, 4, 6, 8, 10, 12, 16}) {
    SCOPED_TRACE(testing::Message() << bits << " bits");
    const size_t n = 200000;
    const auto levels = gaussian_levels(n, bits, 100 + bits);
    const auto coded = diffq::rans_encode(levels.data(), n, bits);
    ASSERT_EQ(decode(coded, n, bits), levels);
    const double entropy = diffq::empirical_entropy(levels.data(), n);
    const double achieved = 8.0 * coded.size() / n;
    // The table costs at most 3 bytes per symbol.
    const double table = 8.0 * 3.0 * (1u << std::min(bits, 16)) / n;
    EXPECT_LE(achieved, entropy + 0.02 + table) << "entropy " << entropy;
    if (bits >= 3 && bits <= 12) {
      EXPECT_LT(achieved, bits - 0.5) << "bell-shaped levels must compress";
    }
  }
}

TEST(Rans, HandlesEmptySingleSymbolAndOddAlphabets) {
  for (int bits : {1, 5, 16}) {
    EXPECT_EQ(decode(diffq::rans_encode(nullptr, 0, bits), 0, bits), std::vector<uint16_t>{});
    const std::vector<uint16_t> same(1001, static_cast<uint16_t>((1u << bits) - 1u));
    EXPECT_EQ(decode(diffq::rans_encode(same.data(), same.size(), bits), same.size(), bits), same);
  }
  std::mt19937 rng(3);
  std::vector<uint16_t> wide(70000);
  for (auto& v : wide) v = static_cast<uint16_t>(rng());  // all 16-bit symbols, scale 16
  EXPECT_EQ(decode(diffq::rans_encode(wide.data(), wide.size(), 16), wide.size(), 16), wide);
  const std::vector<uint16_t> one = {5};
  EXPECT_EQ(decode(diffq::rans_encode(one.data(), 1, 3), 1, 3), one);
}

TEST(Rans, RejectsCorruptionAndTruncation) {
  const auto levels = gaussian_levels(3000, 5, 9);
  const auto coded = diffq::rans_encode(levels.data(), levels.size(), 5);
  std::vector<uint16_t> out(levels.size());
  for (size_t cut = 0; cut < coded.size(); ++cut) {
    EXPECT_THROW(diffq::rans_decode(coded.data(), cut, levels.size(), 5, out.data()), diffq::Error)
        << "cut at " << cut;
  }
  int detected = 0, total = 0;
  for (size_t at = 0; at < coded.size(); at += 7) {
    auto bad = coded;
    bad[at] ^= 0x5a;
    ++total;
    try {
      diffq::rans_decode(bad.data(), bad.size(), levels.size(), 5, out.data());
      detected += out != levels;  // must at least not crash; differences are fine
    } catch (const diffq::Error&) {
      ++detected;
    }
  }
  EXPECT_EQ(detected, total);
  EXPECT_THROW(diffq::rans_decode(coded.data(), coded.size(), levels.size(), 4, out.data()),
               diffq::Error);
}

TEST(Zstd, RoundTripsAndChecksDeclaredSize) {
  const auto levels = gaussian_levels(5000, 8, 1);
  const auto* bytes = reinterpret_cast<const uint8_t*>(levels.data());
  const auto frame = diffq::zstd_compress(bytes, levels.size() * 2, 3);
  std::vector<uint16_t> back(levels.size());
  diffq::zstd_decompress(frame.data(), frame.size(), reinterpret_cast<uint8_t*>(back.data()),
                         back.size() * 2);
  EXPECT_EQ(back, levels);
  std::vector<uint8_t> small(10);
  EXPECT_THROW(diffq::zstd_decompress(frame.data(), frame.size(), small.data(), small.size()),
               diffq::Error);
  EXPECT_THROW(diffq::zstd_decompress(frame.data(), frame.size() - 1,
                                      reinterpret_cast<uint8_t*>(back.data()), back.size() * 2),
               diffq::Error);
}

TEST(Entropy, EmpiricalEntropyOfKnownDistributions) {
  std::vector<uint16_t> half(1000);
  for (size_t i = 0; i < half.size(); ++i) half[i] = i % 2;
  EXPECT_DOUBLE_EQ(diffq::empirical_entropy(half.data(), half.size()), 1.0);
  std::vector<uint16_t> four(1000);
  for (size_t i = 0; i < four.size(); ++i) four[i] = i % 4;
  EXPECT_DOUBLE_EQ(diffq::empirical_entropy(four.data(), four.size()), 2.0);
}

}  // namespace
