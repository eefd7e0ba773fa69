// A TorchScript module (saved to a file, loaded back) quantized and restored.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>

#include "diffq/diffq.h"

using namespace diffq;

namespace {

std::string script_file() {
  torch::manual_seed(11);
  torch::jit::Module child("Child");
  child.register_parameter("weight", torch::randn({32, 64}) * 0.2, false);
  child.register_parameter("bias", torch::zeros({32}), false);
  child.define(R"JIT(
def forward(self, x):
    return torch.matmul(x, self.weight.t()) + self.bias
)JIT");
  torch::jit::Module net("Net");
  net.register_parameter("weight", torch::randn({64, 16}) * 0.2, false);
  net.register_module("head", child);
  net.define(R"JIT(
def forward(self, x):
    return self.head.forward(torch.tanh(torch.matmul(x, self.weight.t())))
)JIT");
  const std::string path = ::testing::TempDir() + "/diffq_test_net.pt";
  net.save(path);
  return path;
}

torch::jit::Module load_trainable(const std::string& path) {
  auto module = torch::jit::load(path);
  for (auto p : module.parameters()) p.requires_grad_(true);
  return module;
}

torch::Tensor run(torch::jit::Module& m, const torch::Tensor& x) {
  return m.forward({x}).toTensor();
}

}  // namespace

TEST(TorchScript, QuantizeTrainEvaluateRestore) {
  const auto path = script_file();
  auto module = load_trainable(path);
  DiscoveryOptions d;
  d.min_size(0);
  auto x = torch::randn({8, 16});
  torch::Tensor quantized_out;
  QuantizedState state;
  {
    DiffQuantizer q(module, DiffQOptions().group_size(16).discovery(d));
    EXPECT_EQ(q.quantized_names(),
              std::vector<std::string>({"weight", "head.weight", "head.bias"}));
    const auto before = module.attr("weight").toTensor().clone();
    std::vector<torch::Tensor> params;
    for (auto p : module.parameters()) params.push_back(p);
    torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.0));
    auto bits = q.make_optimizer(1e-2);
    for (int i = 0; i < 3; ++i) {
      sgd.zero_grad();
      bits->zero_grad();
      auto step = q.training_step();
      (run(module, x).pow(2).mean() + q.model_size()).backward();
      step.finish();
      bits->step();
    }
    EXPECT_TRUE(torch::equal(module.attr("weight").toTensor(), before));
    EXPECT_TRUE(q.parameters()[0].grad().defined());
    {
      auto scope = q.quantized_evaluation();
      quantized_out = run(module, x).detach();
    }
    EXPECT_FALSE(torch::equal(quantized_out, run(module, x).detach()));
    state = q.get_quantized_state();
  }
  // Restore into a fresh copy (no quantizer), save it as TorchScript, load it.
  auto fresh = torch::jit::load(path);
  restore(fresh, state);
  const std::string restored_path = ::testing::TempDir() + "/diffq_test_restored.pt";
  fresh.save(restored_path);
  auto reloaded = torch::jit::load(restored_path);
  EXPECT_TRUE(torch::equal(run(reloaded, x), quantized_out));
  std::remove(path.c_str());
  std::remove(restored_path.c_str());
}
