#pragma once
// Models shared by the benchmark programs.
#include <torch/torch.h>

namespace diffq_bench {

/// The spec's CNN: Conv2d(1,32,3,p1) → Conv2d(32,64,3,p1) → Linear(3136,256)
/// → Linear(256,10), ReLU and 2×2 pooling between (28×28 input).
struct SpecCnnImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))};
  torch::nn::Conv2d conv2{register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))};
  torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(3136, 256))};
  torch::nn::Linear fc2{register_module("fc2", torch::nn::Linear(256, 10))};
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return fc2(torch::relu(fc1(x.flatten(1))));
  }
};
TORCH_MODULE(SpecCnn);

/// 16 × Linear(1024, 1024), the spec's speed model (ReLU between when `relu`).
inline torch::nn::Sequential make_linear_stack(bool relu) {
  torch::nn::Sequential seq;
  for (int i = 0; i < 16; ++i) {
    seq->push_back(torch::nn::Linear(1024, 1024));
    if (relu && i < 15) seq->push_back(torch::nn::ReLU());
  }
  return seq;
}

}  // namespace diffq_bench
