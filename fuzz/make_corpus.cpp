// Writes the fuzzer's seed corpus: small valid model files of every
// encoding, record kind, integer dtype and coding (format version 2), into
// the directory given as argv[1].
#include <cstdio>
#include <random>
#include <string>

#include "diffq/format.h"

namespace {

diffq::TensorRecord record(const std::string& name, diffq::Encoding encoding, int variant,
                           std::mt19937& rng) {
  diffq::TensorRecord r;
  r.name = name;
  r.encoding = encoding;
  r.shape = {2, 4 + variant};
  const size_t n = static_cast<size_t>(r.numel());
  const int bits = 1 + (variant * 5) % 16;
  switch (encoding) {
    case diffq::Encoding::kFloat32:
      for (size_t i = 0; i < n; ++i) r.values_f32.push_back(static_cast<float>(rng() % 100) / 7.f);
      break;
    case diffq::Encoding::kFloat16:
      for (size_t i = 0; i < n; ++i) r.values_f16.push_back(static_cast<uint16_t>(rng()));
      break;
    case diffq::Encoding::kUniform:
    case diffq::Encoding::kLSQ:
      r.bits = bits;
      r.min = -1.f;
      r.max = 2.f;
      r.step = 0.5f;
      for (size_t i = 0; i < n; ++i) r.levels.push_back(static_cast<uint16_t>(rng() & ((1u << bits) - 1)));
      break;
    case diffq::Encoding::kDiffQGroups:
      r.shape = {4, 4};
      r.group_size = variant % 2 ? 4 : 0;
      r.min_bits = 2;
      r.max = 1.f;
      for (int g = 0; g < (r.group_size ? 4 : 1); ++g) {
        const int b = 1 + static_cast<int>(rng() % 16);
        r.group_bits.push_back(static_cast<uint8_t>(b));
        for (int i = 0; i < (r.group_size ? 4 : 16); ++i) {
          r.levels.push_back(static_cast<uint16_t>(rng() & ((1u << b) - 1)));
        }
      }
      break;
    case diffq::Encoding::kInteger: {
      const diffq::DType dtypes[] = {diffq::DType::kInt64, diffq::DType::kInt32,
                                     diffq::DType::kInt16, diffq::DType::kInt8,
                                     diffq::DType::kUInt8, diffq::DType::kBool};
      r.kind = diffq::RecordKind::kBuffer;
      r.dtype = dtypes[(variant + static_cast<int>(rng() % 2) * 3) % 6];
      const int64_t lo = diffq::integer_min(r.dtype), hi = diffq::integer_max(r.dtype);
      for (size_t i = 0; i < n; ++i) {
        r.values_i64.push_back(i == 0 ? lo : i == 1 ? hi : static_cast<int64_t>(rng() % 2));
      }
      break;
    }
    case diffq::Encoding::kPerChannelUniform:
      r.bits = bits;
      for (int64_t c = 0; c < r.shape[0]; ++c) {
        r.channel_min.push_back(-0.5f * static_cast<float>(c + 1));
        r.channel_max.push_back(c == 1 ? r.channel_min.back() : 0.75f * static_cast<float>(c));
      }
      for (size_t i = 0; i < n; ++i) r.levels.push_back(static_cast<uint16_t>(rng() & ((1u << bits) - 1)));
      break;
    case diffq::Encoding::kProductQuantized:
      r.shape = {4, 2};
      r.block_size = 2;
      r.num_centroids = 1 + variant;
      for (int i = 0; i < r.num_centroids * 2; ++i) r.codebook.push_back(static_cast<uint16_t>(rng()));
      for (int i = 0; i < 4; ++i) r.levels.push_back(static_cast<uint16_t>(rng() % r.num_centroids));
      break;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  std::mt19937 rng(1);
  int files = 0;
  for (int variant = 0; variant < 3; ++variant) {
    for (auto coding : {diffq::EntropyCoding::kNone, diffq::EntropyCoding::kZstd,
                        diffq::EntropyCoding::kRans}) {
      diffq::QuantizedState state;
      state.method = "seed";
      state.options = {{"variant", std::to_string(variant)}};
      int index = 0;
      for (auto encoding : {diffq::Encoding::kFloat32, diffq::Encoding::kFloat16,
                            diffq::Encoding::kUniform, diffq::Encoding::kDiffQGroups,
                            diffq::Encoding::kLSQ, diffq::Encoding::kProductQuantized,
                            diffq::Encoding::kInteger, diffq::Encoding::kPerChannelUniform}) {
        state.tensors.push_back(record("t" + std::to_string(index++), encoding, variant, rng));
      }
      // A float buffer (BatchNorm running statistics).
      state.tensors.push_back(record("t" + std::to_string(index++), diffq::Encoding::kFloat32, variant, rng));
      state.tensors.back().kind = diffq::RecordKind::kBuffer;
      const auto bytes = diffq::serialize(state, diffq::SaveOptions().entropy_coding(coding).creation_time(0));
      const std::string path = dir + "/seed_" + std::to_string(files++) + ".dq";
      std::FILE* out = std::fopen(path.c_str(), "wb");
      if (out == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size()) return 1;
      std::fclose(out);
    }
  }
  std::printf("wrote %d seed files to %s\n", files, dir.c_str());
  return 0;
}
