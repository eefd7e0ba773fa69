#pragma once
/// \file model_handle.h
/// A model as the training library sees it, whatever its kind: its
/// parameters (`ModelRef`), its forward function and its train/eval mode.

#include <functional>
#include <memory>
#include <type_traits>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "diffq/model_ref.h"

namespace diffq {
namespace train {

/// A model to train or evaluate. Build one with `model_handle(...)`; it keeps
/// a C++ module alive (shared pointer), and refers to a TorchScript module
/// that must outlive it.
struct ModelHandle {
  /// The parameters (and buffers) of the model.
  ModelRef ref;
  /// inputs -> outputs.
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  /// Switches train (true) / eval (false) mode, recursively.
  std::function<void(bool)> set_training;
  /// The current mode.
  std::function<bool()> is_training;
};

/// A handle on a C++ module with a `forward(torch::Tensor)` method.
template <typename M, typename = std::enable_if_t<std::is_base_of<torch::nn::Module, M>::value>>
ModelHandle model_handle(const std::shared_ptr<M>& module) {
  return ModelHandle{ModelRef(module), [module](const torch::Tensor& x) { return module->forward(x); },
                     [module](bool on) { module->train(on); },
                     [module] { return module->is_training(); }};
}

/// A handle on a TorchScript module whose `forward` takes one tensor and
/// returns one tensor. `module` must outlive the handle.
ModelHandle model_handle(torch::jit::Module& module);

/// Sets a handle's mode for a scope and puts the previous one back.
class ModeGuard {
 public:
  /// Switches `model` to train (`training` true) or eval mode.
  ModeGuard(const ModelHandle& model, bool training)
      : model_(model), was_training_(model.is_training()) {
    model_.set_training(training);
  }
  /// Restores the previous mode.
  ~ModeGuard() { model_.set_training(was_training_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  const ModelHandle& model_;
  bool was_training_;
};

}  // namespace train
}  // namespace diffq
