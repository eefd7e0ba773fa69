#pragma once
// Helpers of the model-state tests: one adapter over the C++ and the
// TorchScript BatchNorm CNN, the methods under test, short training.
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bn_models.h"
#include "diffq/diffq.h"

namespace diffq_test {

using diffq::DiffQOptions;
using diffq::DiffQuantizer;
using diffq::DiscoveryOptions;
using diffq::LSQOptions;
using diffq::LSQQuantizer;
using diffq::ModelRef;
using diffq::QuantizedState;
using diffq::Quantizer;
using diffq::QuantNoiseMode;
using diffq::QuantNoiseOptions;
using diffq::QuantNoiseQuantizer;
using diffq::TensorRecord;
using diffq::UniformOptions;
using diffq::UniformQuantizer;

// One model kind under test: the C++ frontend or the TorchScript BnCnn.
struct Model {
  bool script = false;
  diffq_test::BnCnn nn{nullptr};
  torch::jit::Module jit;

  static Model make(bool script, uint64_t seed,
                    ScriptMomentum momentum = ScriptMomentum::kAttribute) {
    Model m;
    m.script = script;
    if (script) {
      m.jit = diffq_test::make_script_bn_cnn(seed, momentum);
    } else {
      m.nn = diffq_test::make_bn_cnn(seed);
    }
    return m;
  }
  ModelRef ref() { return script ? ModelRef(jit) : ModelRef(nn); }
  torch::Tensor run(const torch::Tensor& x) {
    return script ? jit.forward({x}).toTensor() : nn->forward(x);
  }
  void train(bool on) { script ? jit.train(on) : nn->train(on); }
  std::vector<torch::Tensor> parameters() {
    if (!script) return nn->parameters();
    std::vector<torch::Tensor> out;
    for (const auto& p : jit.parameters()) out.push_back(p);
    return out;
  }
  // Every parameter and buffer by name.
  std::map<std::string, torch::Tensor> tensors() {
    std::map<std::string, torch::Tensor> out;
    auto r = ref();
    for (const auto& p : r.parameters()) out[p.name] = p.tensor;
    for (const auto& b : r.buffers()) out[b.name] = b.tensor;
    return out;
  }
  // Detached copies of every parameter and buffer.
  std::map<std::string, torch::Tensor> snapshot() {
    auto out = tensors();
    for (auto& item : out) item.second = item.second.detach().clone();
    return out;
  }
  bool equals(const std::map<std::string, torch::Tensor>& snap) {
    auto now = tensors();
    if (now.size() != snap.size()) return false;
    for (const auto& item : now) {
      auto it = snap.find(item.first);
      if (it == snap.end() || !torch::equal(item.second.detach(), it->second)) return false;
    }
    return true;
  }
};

inline const char* kind_name(bool script) { return script ? "torchscript" : "nn"; }

enum class Method { kDiffQ, kQAT, kLSQ, kPTQ, kQuantNoiseInt8, kQuantNoiseProxy };
const std::vector<Method> kMethods = {
    Method::kDiffQ,          Method::kQAT, Method::kLSQ, Method::kPTQ, Method::kQuantNoiseInt8,
    Method::kQuantNoiseProxy};

inline const char* method_name(Method m) {
  switch (m) {
    case Method::kDiffQ:
      return "diffq";
    case Method::kQAT:
      return "qat";
    case Method::kLSQ:
      return "lsq";
    case Method::kPTQ:
      return "ptq";
    case Method::kQuantNoiseInt8:
      return "quant-noise-int8";
    case Method::kQuantNoiseProxy:
      return "quant-noise-proxy";
  }
  return "?";
}

// Tensors of at most 16 elements (BatchNorm affine parameters, biases) stay
// float; the convolutions and the linear layer are quantized.
inline DiscoveryOptions discovery(bool float16 = false) {
  DiscoveryOptions d;
  d.min_size(std::ldexp(1.0, -14));  // floor(min_size * 2^20 / 4) = 16 elements
  d.float16(float16);
  return d;
}

inline std::unique_ptr<Quantizer> make_quantizer(const ModelRef& model, Method method,
                                                 const DiscoveryOptions& d) {
  switch (method) {
    case Method::kDiffQ:
      return std::make_unique<DiffQuantizer>(model, DiffQOptions().group_size(8).discovery(d));
    case Method::kQAT:
      return std::make_unique<UniformQuantizer>(model,
                                                UniformOptions().bits(4).qat(true).discovery(d));
    case Method::kLSQ:
      return std::make_unique<LSQQuantizer>(model, LSQOptions().bits(4).discovery(d));
    case Method::kPTQ:
      return std::make_unique<UniformQuantizer>(model,
                                                UniformOptions().bits(3).qat(false).discovery(d));
    case Method::kQuantNoiseInt8:
      return std::make_unique<QuantNoiseQuantizer>(
          model, QuantNoiseOptions().mode(QuantNoiseMode::kScalarInt8).p(0.5).discovery(d));
    case Method::kQuantNoiseProxy:
      return std::make_unique<QuantNoiseQuantizer>(
          model, QuantNoiseOptions().mode(QuantNoiseMode::kProxyDrop).p(0.2).discovery(d));
  }
  return nullptr;
}

// A few training steps (train mode, Adam on the weights and the quantizer's
// own parameters, size penalty); leaves the model in eval mode.
inline void train_steps(Model& m, Quantizer& q, int steps) {
  const auto batches = bn_batches(steps, 16, 5);
  m.train(true);
  torch::optim::Adam opt(m.parameters(), torch::optim::AdamOptions(1e-2));
  if (!q.parameters().empty()) q.add_to_optimizer(opt, 1e-3);
  torch::manual_seed(6);
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto step = q.training_step();
    auto target = torch::randint(0, diffq_test::kBnClasses, {batches[i].size(0)});
    auto loss = torch::nn::functional::cross_entropy(m.run(batches[i]), target) +
                1e-3 * q.model_size().to(torch::kFloat32);
    loss.backward();
    step.finish();
    opt.step();
  }
  m.train(false);
}

inline torch::Tensor eval_input() { return bn_batches(1, 8, 77)[0]; }

inline float max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<float>();
}

inline const TensorRecord* find_record(const QuantizedState& state, const std::string& name) {
  for (const auto& r : state.tensors) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

inline TensorRecord* find_record(QuantizedState& state, const std::string& name) {
  for (auto& r : state.tensors) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const std::vector<std::string> kBufferNames = {
    "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
    "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked"};

}  // namespace diffq_test
