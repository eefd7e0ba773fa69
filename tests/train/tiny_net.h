#pragma once
// The training library tests' small network and its batches.
#include <cstdint>

#include <torch/torch.h>

#include "diffq/train/loop.h"

namespace train_test {

/// Linear(32, 64) → ReLU → Linear(64, 4).
struct TinyImpl : torch::nn::Module {
  torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(32, 64))};
  torch::nn::Linear fc2{register_module("fc2", torch::nn::Linear(64, 4))};
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::relu(fc1(x))); }
};
TORCH_MODULE(Tiny);

/// A Tiny initialised from `seed`.
inline Tiny make_tiny(uint64_t seed) {
  torch::manual_seed(seed);
  return Tiny();
}

/// `n` random inputs from `seed`; the target is the argmax of the first four.
inline diffq::train::Batch tiny_batch(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 32});
  return {x, x.slice(1, 0, 4).argmax(1)};
}

}  // namespace train_test
