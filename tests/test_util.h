#pragma once
// Shared fixtures for the torch tests.
#include <torch/torch.h>

#include "diffq/quantizer.h"

#include <cstring>
#include <vector>

namespace diffq_test {

/// The spec's CNN: Conv2d(1,32,3,p1) → Conv2d(32,64,3,p1) → Linear(3136,256)
/// → Linear(256,10), with pooling between (28×28 input).
struct SpecCnnImpl : torch::nn::Module {
  SpecCnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(3136, 256))),
        fc2(register_module("fc2", torch::nn::Linear(256, 10))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    x = torch::relu(fc1(x.flatten(1)));
    return fc2(x);
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(SpecCnn);

/// A small MLP.
struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden, int64_t out)
      : fc1(register_module("fc1", torch::nn::Linear(in, hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, out))) {}
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

/// Discovery that quantizes every parameter (min_size 0).
inline diffq::DiscoveryOptions all_params() {
  diffq::DiscoveryOptions d;
  d.min_size(0);
  return d;
}

/// Copies every parameter value (detached clones), in model order.
inline std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

/// True when every parameter equals the snapshot bit for bit (NaN payloads
/// and the sign of zero included).
inline bool same_bits(torch::nn::Module& m, const std::vector<torch::Tensor>& snap) {
  auto params = m.parameters();
  if (params.size() != snap.size()) return false;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto a = params[i].detach().contiguous().cpu(), b = snap[i].contiguous().cpu();
    if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
    if (std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) != 0) return false;
  }
  return true;
}

}  // namespace diffq_test
