#pragma once
/// \file loop.h
/// The training library's loop: `Trainer` makes one optimizer step at a
/// time for any model and method; `run_epochs` drives it over a data set.
///
/// \code
///   diffq::train::Trainer trainer(net, diffq::train::TrainerOptions().method("diffq"));
///   trainer.fit(images, labels, /*epochs=*/3, /*batch_size=*/64);
///   trainer.save("net.diffq");
/// \endcode
///
/// Two extension points: a `StepStrategy` decides how one optimizer step's
/// gradients are computed (one pass by default; several passes for methods
/// that need them), and gradient hooks run between backward and the
/// optimizer step (e.g. an all-reduce for data-parallel training).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "diffq/format.h"
#include "diffq/quantizer.h"
#include "diffq/train/methods.h"
#include "diffq/train/model_handle.h"
#include "diffq/train/size_target.h"
#include "diffq/train/trainer_options.h"

namespace diffq {
namespace train {

/// Inputs and targets of one optimizer step.
struct Batch {
  /// Model inputs.
  torch::Tensor inputs;
  /// Targets of the loss.
  torch::Tensor targets;
  /// This process's part of the step's global batch (1 for a single
  /// process): data-parallel training weights each rank's gradient by it.
  double share = 1.0;
};

/// What one optimizer step computed.
struct StepResult {
  /// Outputs of the (main) forward pass, detached.
  torch::Tensor outputs;
  /// Task loss of that pass (without the size penalty), detached scalar.
  torch::Tensor loss;
};

class Trainer;

/// How the gradients of one optimizer step are computed.
class StepStrategy {
 public:
  virtual ~StepStrategy() = default;
  /// Runs the forward/backward passes of one step on `batch`. On return the
  /// gradients of `trainer.parameters()` are accumulated and every
  /// quantizer step it opened is finished.
  virtual StepResult compute_gradients(Trainer& trainer, const Batch& batch) = 0;
  /// Runs after the gradient hooks (data-parallel averaging) and before
  /// clipping by norm and the optimizer step: element-wise changes that must
  /// see the gradient of the whole batch, not one process's share of it.
  virtual void finish_gradients(Trainer& trainer) { (void)trainer; }
};

/// The default strategy: one forward and one backward inside a quantizer
/// training step; loss = task loss + λ · size (MiB) for penalised methods.
class SinglePassStep : public StepStrategy {
 public:
  /// See `StepStrategy::compute_gradients`.
  StepResult compute_gradients(Trainer& trainer, const Batch& batch) override;
};

/// Runs between backward and the optimizer step with every tensor the
/// optimizers update (the model's parameters, then the quantizer's own).
using GradientHook = std::function<void(const std::vector<torch::Tensor>& parameters)>;

/// Trains one model with one compression method: builds the method's
/// quantizer, the model's Adam optimizer and the quantizer's own one.
class Trainer {
 public:
  /// Trains `model` per `options`. Throws `diffq::Error` for an unknown
  /// method or bad options.
  Trainer(ModelHandle model, TrainerOptions options);
  /// Trains a C++ module (any `torch::nn::Module` with `forward(Tensor)`).
  template <typename M, typename = std::enable_if_t<std::is_base_of<torch::nn::Module, M>::value>>
  Trainer(const std::shared_ptr<M>& module, TrainerOptions options)
      : Trainer(model_handle(module), std::move(options)) {}
  /// Trains the module inside a holder (`TORCH_MODULE` types, `torch::nn::Linear`, ...).
  template <typename Impl>
  Trainer(const torch::nn::ModuleHolder<Impl>& holder, TrainerOptions options)
      : Trainer(model_handle(holder.ptr()), std::move(options)) {}
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Replaces the step strategy (default `SinglePassStep`).
  void set_step_strategy(std::unique_ptr<StepStrategy> strategy);
  /// Adds a gradient hook (run in the order added).
  void add_gradient_hook(GradientHook hook);

  /// One optimizer step on `batch`: learning rate of this step, zeroed
  /// gradients, the strategy's passes, a finite-loss check, the gradient
  /// hooks, clipping, the optimizers' steps. Model in train mode.
  StepResult step(const Batch& batch);
  /// Trains `epochs` epochs over (inputs, targets) in shuffled batches (the
  /// order is a function of the seed and the epoch).
  void fit(const torch::Tensor& inputs, const torch::Tensor& targets, int epochs, int64_t batch_size);

  /// The model.
  const ModelHandle& model() const { return model_; }
  /// The method.
  const MethodInfo& method() const { return *method_; }
  /// The options (the method options' `bits_lr` resolved).
  const TrainerOptions& options() const { return options_; }
  /// The quantizer (null for the float baseline).
  Quantizer* quantizer() const { return quantizer_.get(); }
  /// The model's optimizer.
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  /// The quantizer's own optimizer (null when it has no parameters).
  torch::optim::Optimizer* own_optimizer() { return own_optimizer_.get(); }
  /// Every tensor the optimizers update: the model's parameters (tied
  /// tensors once), then the quantizer's own.
  const std::vector<torch::Tensor>& parameters() const { return parameters_; }
  /// The task loss of `outputs` against `targets`.
  torch::Tensor loss(const torch::Tensor& outputs, const torch::Tensor& targets) const;
  /// λ · model size (MiB) for penalised methods; undefined otherwise.
  torch::Tensor penalty() const;
  /// The current λ: the method options' `penalty`, or the Lagrange
  /// multiplier of target-size mode.
  double size_penalty() const { return lambda_; }
  /// The controller of target-size mode (`target_mib` / `target_bits`);
  /// null otherwise or before the first step.
  const SizeController* size_controller() const { return size_target_.get(); }
  /// The step from which DiffQ's bits are frozen (`frozen_fraction`, and
  /// the end of training in target-size mode); -1 when they never are.
  /// Needs the total steps.
  int64_t freeze_step() const;

  /// How many of `parameters()` (the last ones) are the quantizer's own.
  size_t quantizer_parameter_count() const { return parameters_.size() - model_parameter_count_; }
  /// The `share` of the batch of the current (or last) step.
  double batch_share() const { return batch_share_; }

  /// Optimizer steps taken.
  int64_t global_step() const { return global_step_; }
  /// Continues at `global_step` after a checkpoint was loaded: the
  /// quantizer's step counter is set (or its random stream replayed).
  void resume_at(int64_t global_step);
  /// The model's learning rate at the current step.
  double learning_rate() const;
  /// Mean bits of the quantized weights now (DiffQ's learned bits; the
  /// state's mean bits otherwise, computed once; 32 for float).
  double mean_bits() const;

  /// The state to store: the quantizer's, or float32 for the float baseline.
  QuantizedState quantized_state() const;
  /// Writes the model file (atomically); returns its size in bytes.
  uint64_t save(const std::string& path, const SaveOptions& options = {}) const;
  /// Writes a checkpoint (atomically): model, quantizer and optimizer
  /// states, the step, and `extra` (the caller's own record).
  void save_checkpoint(const std::string& path, const nlohmann::json& extra) const;
  /// Loads a checkpoint written by `save_checkpoint` into this trainer and
  /// continues at its step; returns its `extra`. The trainer must have the
  /// same model and method, built as in the original run (same seed): a
  /// quantizer may keep what it measured on the initial weights.
  nlohmann::json load_checkpoint(const std::string& path);

 private:
  ModelHandle model_;
  TrainerOptions options_;
  const MethodInfo* method_;
  std::unique_ptr<Quantizer> quantizer_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<torch::optim::Optimizer> own_optimizer_;
  std::unique_ptr<StepStrategy> strategy_;
  std::vector<GradientHook> hooks_;
  std::vector<torch::Tensor> parameters_;
  size_t model_parameter_count_ = 0;
  /// Target-size mode: freezes (and, with a target, shifts) DiffQ's bits
  /// when the freeze step is reached; updates λ after a step.
  void init_size_target();
  void freeze_bits_if_due(bool shift);
  void update_size_penalty();
  /// The measure the target constrains (MiB or mean bits; smooth or true).
  double target_measure(bool smooth) const;
  bool bits_frozen() const;
  int64_t global_step_ = 0;
  double batch_share_ = 1.0;
  double lambda_ = 0.0;
  /// The target measure at step 0 (the reference's start); 0 without target.
  double target_start_ = 0.0;
  std::unique_ptr<SizeController> size_target_;
  mutable double static_mean_bits_ = -1;
};

/// Where an epoch loop is.
struct Position {
  /// Epoch (from 0).
  int64_t epoch = 0;
  /// Steps done in this epoch.
  int64_t step = 0;
  /// Steps done in all.
  int64_t global_step = 0;
};

/// The shape of an epoch loop.
struct LoopPlan {
  /// Training examples.
  int64_t examples = 0;
  /// Examples per step (the last batch of an epoch may be smaller).
  int64_t batch_size = 64;
  /// Epochs.
  int64_t epochs = 1;
  /// This process's rank and the number of processes of data-parallel
  /// training: each step takes `world_size · batch_size` examples of the
  /// epoch's order (the same order on every rank) and rank r trains on the
  /// r-th of `world_size` near-equal parts of them.
  int rank = 0;
  /// See `rank`.
  int world_size = 1;
  /// Examples per step over all processes.
  int64_t global_batch() const { return batch_size * world_size; }
  /// Steps per epoch (a last partial step is kept when every rank gets at
  /// least one example of it).
  int64_t steps_per_epoch() const {
    return examples / global_batch() + (examples % global_batch() >= world_size ? 1 : 0);
  }
  /// Steps in all.
  int64_t total_steps() const { return steps_per_epoch() * epochs; }
};

/// What the epoch loop asks of its owner (all but `batch` optional).
struct LoopHooks {
  /// The batch of the examples `indices` (int64) at `position`.
  std::function<Batch(const torch::Tensor& indices, const Position& position)> batch;
  /// At the start of an epoch (position.step may be > 0 on resume).
  std::function<void(const Position&)> start_epoch;
  /// After each optimizer step (position advanced).
  std::function<void(const Position&, const StepResult&)> after_step;
  /// After the last step of an epoch (position.step == steps per epoch).
  std::function<void(const Position&)> end_epoch;
  /// Asked after each step but an epoch's last, and after each epoch but
  /// the last: true stops the loop.
  std::function<bool(const Position&)> should_stop;
};

/// Runs the epochs of `plan` from `position` (advanced as it goes). Each
/// epoch visits the examples in an order drawn from the trainer's seed and
/// the epoch. Returns true when every epoch is done, false when stopped.
bool run_epochs(Trainer& trainer, const LoopPlan& plan, Position& position, const LoopHooks& hooks);

}  // namespace train
}  // namespace diffq
