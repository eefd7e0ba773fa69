// The deterministic state of the version-1 fixture files.
#include "v1_fixture.h"

#include <cstdint>
#include <random>

namespace diffq_test {

using diffq::DType;
using diffq::Encoding;
using diffq::TensorRecord;

namespace {

TensorRecord make(const std::string& name, std::vector<int64_t> shape, Encoding encoding,
                  DType dtype = DType::kFloat32) {
  TensorRecord r;
  r.name = name;
  r.shape = std::move(shape);
  r.encoding = encoding;
  r.dtype = dtype;
  return r;
}

std::vector<uint16_t> draws(size_t n, uint32_t below, std::mt19937& rng) {
  std::vector<uint16_t> out(n);
  for (auto& v : out) v = static_cast<uint16_t>(rng() % below);
  return out;
}

}  // namespace

diffq::QuantizedState v1_fixture_state() {
  std::mt19937 rng(20240131);
  diffq::QuantizedState state;
  state.method = "diffq";
  state.options = {{"group_size", "4"}, {"min_bits", "2"}, {"note", "v1 fixture ü"}};

  // DiffQ, group size 4, mixed widths (1, 3, 8, 15, 16), tied to head.weight.
  TensorRecord groups = make("layers.0.weight", {4, 5}, Encoding::kDiffQGroups);
  groups.aliases = {"head.weight"};
  groups.group_size = 4;
  groups.min_bits = 2;
  groups.min = -1.25f;
  groups.max = 0.75f;
  groups.group_bits = {3, 15, 1, 8, 16};
  for (uint8_t b : groups.group_bits) {
    const auto levels = draws(4, 1u << b, rng);
    groups.levels.insert(groups.levels.end(), levels.begin(), levels.end());
  }
  state.tensors.push_back(groups);

  TensorRecord bias = make("layers.0.bias", {5}, Encoding::kFloat32);
  bias.values_f32 = {-0.f, 1.5f, -2.25f, 3.0e-39f /* subnormal */, 1.f / 3.f};
  state.tensors.push_back(bias);

  // DiffQ, one group for the whole tensor.
  TensorRecord whole = make("layers.1.weight", {3, 3}, Encoding::kDiffQGroups);
  whole.group_size = 0;
  whole.min_bits = 2;
  whole.min = -0.5f;
  whole.max = 0.5f;
  whole.group_bits = {6};
  whole.levels = draws(9, 64, rng);
  state.tensors.push_back(whole);

  TensorRecord norm = make("norm.weight", {6}, Encoding::kFloat16, DType::kFloat16);
  norm.values_f16 = {0x3c00, 0xbc00, 0x0001, 0x7bff, 0x8000, 0x3555};
  state.tensors.push_back(norm);

  TensorRecord wide = make("norm.bias", {2}, Encoding::kFloat16, DType::kBFloat16);
  wide.values_f16 = {0x4000, 0xc200};
  state.tensors.push_back(wide);

  TensorRecord conv = make("conv.weight", {2, 3, 2}, Encoding::kUniform);
  conv.bits = 5;
  conv.min = -0.731f;
  conv.max = 1.f / 3.f;
  conv.levels = draws(12, 32, rng);
  state.tensors.push_back(conv);

  TensorRecord scalar = make("scale", {}, Encoding::kLSQ, DType::kFloat64);
  scalar.bits = 7;
  scalar.step = 0.0123f;
  scalar.levels = {101};
  state.tensors.push_back(scalar);

  TensorRecord lsq = make("proj.weight", {2, 4}, Encoding::kLSQ);
  lsq.bits = 3;
  lsq.step = 0.25f;
  lsq.levels = draws(8, 8, rng);
  state.tensors.push_back(lsq);

  TensorRecord pq = make("emb.weight", {5, 2}, Encoding::kProductQuantized);
  pq.block_size = 2;
  pq.num_centroids = 3;
  pq.codebook = {0x3c00, 0x4000, 0xbc00, 0x3800, 0x0000, 0xc400};
  pq.levels = draws(5, 3, rng);
  state.tensors.push_back(pq);

  TensorRecord empty = make("empty", {0, 3}, Encoding::kFloat32);
  state.tensors.push_back(empty);
  return state;
}

std::string v1_fixture_name(diffq::EntropyCoding coding) {
  return std::string("v1_") + diffq::entropy_coding_name(coding) + ".diffq";
}

}  // namespace diffq_test
