#pragma once
/// \file model_ref.h
/// A non-owning view of a model's parameters and buffers, for both LibTorch
/// module kinds.

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace torch {
namespace jit {
struct Module;
}  // namespace jit
}  // namespace torch

namespace diffq {

/// A parameter of a model and its full dotted name ("layers.0.weight").
struct NamedParameter {
  /// Full dotted name.
  std::string name;
  /// The parameter itself (shares the model's tensor).
  torch::Tensor tensor;
};

/// A persistent buffer of a model (BatchNorm's running statistics, ...) and
/// its full dotted name ("bn1.running_mean").
struct NamedBuffer {
  /// Full dotted name.
  std::string name;
  /// The buffer itself (shares the model's tensor).
  torch::Tensor tensor;
};

/// Refers to a `torch::nn::Module` (any subclass, or a module holder such as
/// `torch::nn::Linear`) or to a `torch::jit::Module` loaded from TorchScript.
///
/// The view is transient: it must not outlive the model. Quantizers use it
/// only while they are built; they keep the parameter tensors themselves.
class ModelRef {
 public:
  /// Refers to a C++ frontend module.
  ModelRef(torch::nn::Module& module) : nn_(&module) {}  // NOLINT: implicit by design
  /// Refers to a C++ frontend module held by a shared pointer.
  template <typename T,
            typename = std::enable_if_t<std::is_base_of<torch::nn::Module, T>::value>>
  ModelRef(const std::shared_ptr<T>& module) : nn_(module.get()) {}  // NOLINT
  /// Refers to the module inside a holder (`torch::nn::Linear`, `TORCH_MODULE` types).
  template <typename Impl>
  ModelRef(const torch::nn::ModuleHolder<Impl>& holder) : nn_(holder.ptr().get()) {}  // NOLINT
  /// Refers to a TorchScript module (for example one from `torch::jit::load`).
  ModelRef(torch::jit::Module& module) : jit_(&module) {}  // NOLINT

  /// Every parameter in registration order: modules depth first in the order
  /// they were registered, each module's own parameters in registration
  /// order. A tensor registered under two names appears twice.
  std::vector<NamedParameter> parameters() const;

  /// Every persistent buffer in registration order (same traversal as
  /// `parameters()`); undefined buffers (e.g. BatchNorm without running
  /// statistics) are skipped. A tensor registered under two names appears
  /// twice. The C++ frontend has no non-persistent buffers. TorchScript 1.13
  /// does not record persistence: a buffer registered with
  /// `persistent=False` in Python is an ordinary buffer of the scripted
  /// module (saved by `torch.jit.save`, listed in its `state_dict()`), so it
  /// is listed here too (see docs/model_state.md).
  std::vector<NamedBuffer> buffers() const;

  /// True when this refers to a TorchScript module.
  bool is_script() const { return jit_ != nullptr; }
  /// The C++ frontend module referred to, or null for a TorchScript module.
  torch::nn::Module* nn_module() const { return nn_; }
  /// The TorchScript module referred to, or null for a C++ frontend module.
  torch::jit::Module* script_module() const { return jit_; }

 private:
  torch::nn::Module* nn_ = nullptr;
  torch::jit::Module* jit_ = nullptr;
};

}  // namespace diffq
