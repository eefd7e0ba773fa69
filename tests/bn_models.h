#pragma once
// BatchNorm model fixtures shared by the torch tests (and, later, the CLI
// tests): a small C++ frontend CNN with BatchNorm, and the same network as
// a TorchScript module built in C++ (LibTorch cannot script Python).
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace diffq_test {

/// Input shape of the BatchNorm CNNs: [batch, 1, 12, 12].
constexpr int64_t kBnImage = 12;
/// Number of classes of the BatchNorm CNNs.
constexpr int64_t kBnClasses = 10;

/// conv1(1→8, 3×3, pad 1) → bn1 → relu → conv2(8→16, 3×3, pad 1) → bn2 →
/// relu → max-pool 2 → flatten → fc(576→10). Parameters: conv1.{weight,bias},
/// bn1.{weight,bias}, conv2.*, bn2.*, fc.*; buffers: bn{1,2}.{running_mean,
/// running_var,num_batches_tracked}.
struct BnCnnImpl : torch::nn::Module {
  BnCnnImpl()
      : conv1(register_module("conv1",
                              torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(8))),
        conv2(register_module("conv2",
                              torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1)))),
        bn2(register_module("bn2", torch::nn::BatchNorm2d(16))),
        fc(register_module("fc",
                           torch::nn::Linear(16 * (kBnImage / 2) * (kBnImage / 2), kBnClasses))) {
    // Non-trivial affine parameters, so that quantizing them matters.
    torch::NoGradGuard no_grad;
    for (auto* bn : {bn1.get(), bn2.get()}) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1(conv1(x)));
    x = torch::relu(bn2(conv2(x)));
    return fc(torch::max_pool2d(x, 2).flatten(1));
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Linear fc;
};
TORCH_MODULE(BnCnn);

/// A freshly initialised `BnCnn` from `seed`.
inline BnCnn make_bn_cnn(uint64_t seed) {
  torch::manual_seed(seed);
  return BnCnn();
}

/// How the TorchScript BatchNorm layers hold their momentum.
enum class ScriptMomentum {
  /// A float attribute `momentum` (0.1), read by the forward.
  kAttribute,
  /// A class constant 0.1 inlined in the forward, as in a
  /// `torch.nn.BatchNorm2d` scripted from Python.
  kConstant,
  /// A class constant None: cumulative average over num_batches_tracked.
  kConstantNone,
};

namespace detail {

inline torch::jit::Module script_leaf(const std::string& type) {
  torch::jit::Module m(type);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

inline torch::jit::Module script_conv(int64_t in, int64_t out) {
  auto m = script_leaf("Conv");
  const double bound = 1.0 / std::sqrt(static_cast<double>(in * 9));
  m.register_parameter(
      "weight", torch::empty({out, in, 3, 3}).uniform_(-bound, bound).requires_grad_(), false);
  m.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound).requires_grad_(), false);
  m.define(R"JIT(
def forward(self, x):
    return torch.conv2d(x, self.weight, self.bias, [1, 1], [1, 1], [1, 1], 1)
)JIT");
  return m;
}

inline torch::jit::Module script_bn(int64_t channels, ScriptMomentum momentum) {
  auto m = script_leaf("BatchNorm");
  m.register_parameter("weight", torch::empty({channels}).uniform_(0.5, 1.5).requires_grad_(),
                       false);
  m.register_parameter("bias", torch::empty({channels}).uniform_(-0.2, 0.2).requires_grad_(),
                       false);
  m.register_buffer("running_mean", torch::zeros({channels}));
  m.register_buffer("running_var", torch::ones({channels}));
  m.register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
  m.register_attribute("eps", c10::FloatType::get(), 1e-5);
  switch (momentum) {
    case ScriptMomentum::kAttribute:
      // As torch.nn.BatchNorm2d with a float momentum.
      m.register_attribute("momentum", c10::FloatType::get(), 0.1);
      m.define(R"JIT(
def forward(self, x):
    if self.training:
        self.num_batches_tracked.add_(1)
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, self.momentum, self.eps, False)
)JIT");
      break;
    case ScriptMomentum::kConstant:
      // As torch.jit.script(torch.nn.BatchNorm2d(c)): the constant is inlined.
      m.type()->addConstant("momentum", 0.1);
      m.define(R"JIT(
def forward(self, x):
    if self.training:
        self.num_batches_tracked.add_(1)
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, 0.1, self.eps, False)
)JIT");
      break;
    case ScriptMomentum::kConstantNone:
      // As torch.jit.script(torch.nn.BatchNorm2d(c, momentum=None)).
      m.type()->addConstant("momentum", c10::IValue());
      m.define(R"JIT(
def forward(self, x):
    factor = 0.0
    if self.training:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked)
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, factor, self.eps, False)
)JIT");
      break;
  }
  return m;
}

inline torch::jit::Module script_linear(int64_t in, int64_t out) {
  auto m = script_leaf("Linear");
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  m.register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound).requires_grad_(),
                       false);
  m.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound).requires_grad_(), false);
  m.define(R"JIT(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)JIT");
  return m;
}

}  // namespace detail

/// The `BnCnn` architecture as a TorchScript module (same names, same
/// computation), freshly initialised from `seed`; trainable, in train mode.
/// `image` is the input's side (the Fashion-MNIST CLI tests use 28).
inline torch::jit::Module make_script_bn_cnn(uint64_t seed,
                                             ScriptMomentum momentum = ScriptMomentum::kAttribute,
                                             int64_t image = kBnImage) {
  torch::manual_seed(seed);
  auto net = detail::script_leaf("BnCnn");
  net.register_module("conv1", detail::script_conv(1, 8));
  net.register_module("bn1", detail::script_bn(8, momentum));
  net.register_module("conv2", detail::script_conv(8, 16));
  net.register_module("bn2", detail::script_bn(16, momentum));
  net.register_module("fc",
                      detail::script_linear(16 * (image / 2) * (image / 2), kBnClasses));
  net.define(R"JIT(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = torch.relu(self.bn2.forward(self.conv2.forward(x)))
    x = torch.max_pool2d(x, [2, 2])
    return self.fc.forward(torch.flatten(x, 1))
)JIT");
  return net;
}

/// Random input batches for the BatchNorm CNNs (shifted and scaled so that
/// the statistics are far from BatchNorm's initial 0 and 1).
inline std::vector<torch::Tensor> bn_batches(int64_t count, int64_t size, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < count; ++i)
    out.push_back(torch::randn({size, 1, kBnImage, kBnImage}) * 2 + 0.5);
  return out;
}

}  // namespace diffq_test
