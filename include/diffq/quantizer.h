#pragma once
/// \file quantizer.h
/// The quantizer framework shared by DiffQ, uniform (PTQ/QAT) and LSQ.
///
/// A quantizer wraps any model without rewriting it. It keeps each
/// parameter's tensor (so optimizer state and `torch::save` keep working) and
/// swaps the tensor's data for the duration of a training step or an
/// evaluation scope:
///
/// \code
///   diffq::DiffQuantizer quantizer(model, diffq::DiffQOptions().group_size(16));
///   quantizer.add_to_optimizer(optimizer, /*lr=*/1e-3);   // the bits' group
///   for (auto& batch : loader) {
///     optimizer.zero_grad();
///     auto step = quantizer.training_step();       // noisy weights in place
///     auto loss = criterion(model->forward(batch.data), batch.target)
///                 + penalty * quantizer.model_size();
///     loss.backward();                             // latent weights are back
///     step.finish();                               // (or let it go out of scope)
///     optimizer.step();
///   }
///   {
///     auto scope = quantizer.quantized_evaluation(); // true quantized weights
///     evaluate(model);
///   }                                                // float weights restored, bit for bit
/// \endcode
///
/// During `backward()`, a gradient hook on each quantized tensor delivers the
/// full gradient to the latent float weight (identity, range path, straight
/// through or LSQ as the method says) and the method's own gradient to the
/// quantizer's parameters, then puts the float data back. Weights that the
/// backward pass does not reach are put back by `finish()`.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include "diffq/model_ref.h"
#include "diffq/quantized_state.h"

namespace diffq {

/// Which parameters a quantizer quantizes (spec section 4).
struct DiscoveryOptions {
  /// Parameters with at most `floor(min_size * 2^20 / 4)` elements stay float.
  TORCH_ARG(double, min_size) = 0.01;
  /// Store the parameters left in float as float16 (else float32).
  TORCH_ARG(bool, float16) = false;
  /// Glob patterns (fnmatch) of parameters left in float, matched against the
  /// full dotted name and the bare name (e.g. "bias", "layers.[024].*").
  TORCH_ARG(std::vector<std::string>, exclude) = {};
  /// Share quantization between the occurrences of a tied tensor.
  TORCH_ARG(bool, detect_bound) = true;
};

class Quantizer;

namespace detail {

/// One quantized tensor occurrence (internal to the quantizers).
struct Slot {
  /// Dotted name of the occurrence.
  std::string name;
  /// Names of the other occurrences sharing this slot (tied, detected).
  std::vector<std::string> aliases;
  /// The model's parameter tensor (identity kept).
  torch::Tensor tensor;
  /// The method's own trainable tensor (DiffQ logits, LSQ step), if any.
  torch::Tensor own;
  /// The float data while the tensor holds other data; undefined otherwise.
  torch::Tensor latent;
  /// The data installed for the training forward (a buffer of this step
  /// only: released when the gradient arrives, see `Quantizer::new_buffer`).
  torch::Tensor installed;
  /// Index of the first slot sharing this tensor (itself when unique).
  size_t storage_index = 0;
  /// True while a training step waits for this slot's gradient.
  bool waiting_for_gradient = false;
  /// True when the gradient reached this slot in the current step.
  bool received_gradient = false;
};

/// A parameter left in float.
struct Leftover {
  /// Dotted name.
  std::string name;
  /// Other names of the same tensor (tied, detected).
  std::vector<std::string> aliases;
  /// The parameter.
  torch::Tensor tensor;
  /// Stored as float16.
  bool float16 = false;
};

/// A buffer of the model, stored as it is (never quantized).
struct Buffer {
  /// Dotted name of the first occurrence.
  std::string name;
  /// Other names of the same tensor (tied buffers).
  std::vector<std::string> aliases;
  /// The model's buffer (identity kept; its values are read when a state
  /// is taken). Buffers updated in place (BatchNorm, `restore`,
  /// `recalibrate_batchnorm`) are seen; a buffer re-assigned to a new tensor
  /// after the quantizer was built is not.
  torch::Tensor tensor;
};

}  // namespace detail

/// Scope of one training step: from `Quantizer::training_step()` to
/// `finish()` (or destruction). Move-only.
class TrainingStep {
 public:
  /// Ends the step: restores the float data of every tensor that backward
  /// did not reach, and (DiffQ, check-unused) zeroes their bits' gradients.
  void finish();
  /// Calls `finish()`.
  ~TrainingStep();
  /// Moves the scope; the moved-from object no longer ends it.
  TrainingStep(TrainingStep&& other) noexcept;
  TrainingStep(const TrainingStep&) = delete;
  TrainingStep& operator=(const TrainingStep&) = delete;
  TrainingStep& operator=(TrainingStep&&) = delete;

 private:
  friend class Quantizer;
  explicit TrainingStep(Quantizer* quantizer) : quantizer_(quantizer) {}
  Quantizer* quantizer_;
};

/// Scope in which the model holds its TRUE quantized weights. The float
/// weights are restored bit for bit when it ends. Move-only.
class QuantizedEvaluation {
 public:
  /// Restores the float weights now.
  void finish();
  /// Calls `finish()`.
  ~QuantizedEvaluation();
  /// Moves the scope; the moved-from object no longer ends it.
  QuantizedEvaluation(QuantizedEvaluation&& other) noexcept;
  QuantizedEvaluation(const QuantizedEvaluation&) = delete;
  QuantizedEvaluation& operator=(const QuantizedEvaluation&) = delete;
  QuantizedEvaluation& operator=(QuantizedEvaluation&&) = delete;

 private:
  friend class Quantizer;
  explicit QuantizedEvaluation(Quantizer* quantizer) : quantizer_(quantizer) {}
  Quantizer* quantizer_;
};

/// Base of every quantizer. Not copyable nor movable (gradient hooks refer
/// to it); hold it by value or in a `std::unique_ptr`. One quantizer per
/// model: a second one on any of the same parameters is refused.
class Quantizer {
 public:
  virtual ~Quantizer();
  Quantizer(const Quantizer&) = delete;
  Quantizer& operator=(const Quantizer&) = delete;

  /// Starts a training step: quantized tensors get their training data
  /// (noisy for DiffQ, quantized for QAT/LSQ). Refused while another step
  /// or an evaluation scope is active.
  TrainingStep training_step();
  /// Starts an evaluation scope on the true quantized weights (computed once
  /// per scope, on the model's device). Refused while a step is active.
  QuantizedEvaluation quantized_evaluation();

  /// Estimated model size in MiB, as a scalar tensor; differentiable with
  /// respect to the quantizer's parameters where the method learns sizes.
  virtual torch::Tensor model_size() const = 0;
  /// Size in MiB that a perfect bit-packer reaches (spec section 5).
  virtual double true_model_size() const = 0;
  /// Size in MiB of the same model stored entirely in float32.
  double float_model_size() const;
  /// The quantized state: everything needed to restore the model. One
  /// record per parameter (quantized or float leftover) in model order,
  /// then one record per persistent buffer (kind `RecordKind::kBuffer`, in
  /// model order, tied names as aliases): floating buffers as float32
  /// (float16 with `DiscoveryOptions::float16`), integer and bool buffers
  /// exactly (`Encoding::kInteger`). Buffers are never quantized and are
  /// not counted in `true_model_size()`.
  virtual QuantizedState get_quantized_state() const;

  /// The quantizer's own trainable tensors (DiffQ logits, LSQ steps).
  std::vector<torch::Tensor> parameters() const;
  /// Adds `parameters()` to `optimizer` as a new parameter group with
  /// learning rate `lr` and weight decay 0 (Adam, AdamW, SGD, RMSprop,
  /// Adagrad). Throws if any of them is already in the optimizer.
  void add_to_optimizer(torch::optim::Optimizer& optimizer, double lr) const;
  /// A separate Adam optimizer over `parameters()` (weight decay 0), the
  /// usual setup when the model's optimizer is SGD.
  std::unique_ptr<torch::optim::Optimizer> make_optimizer(double lr) const;

  /// Names of the quantized parameters (one per slot), in model order.
  std::vector<std::string> quantized_names() const;
  /// Names of the parameters left in float, in model order.
  std::vector<std::string> float_names() const;
  /// Names of the model's persistent buffers (first occurrences), in model
  /// order: what `get_quantized_state()` stores besides the parameters.
  std::vector<std::string> buffer_names() const;
  /// Number of gradient steps seen (training steps finished).
  int64_t steps() const { return steps_; }
  /// Sets the step counter, when resuming a run from a checkpoint: DiffQ's
  /// noise is a pure function of (seed, step, tensor), so a resumed run
  /// draws exactly the noise of an uninterrupted one.
  void set_steps(int64_t steps);

 protected:
  /// Discovers the parameters of `model` per `options` and registers the
  /// quantizer (refusing a second one on the same parameters).
  Quantizer(const ModelRef& model, const DiscoveryOptions& options, std::string method);

  /// Must be called by the derived constructor once `own` tensors exist:
  /// installs the gradient hooks.
  void install_hooks();

  /// The data installed in `slot.tensor` for a training forward, computed
  /// from `slot.latent` without gradient. Return undefined to leave the
  /// float data in place.
  virtual torch::Tensor training_data(detail::Slot& slot) = 0;
  /// Given `grad` = dL/d(installed data), returns dL/d(latent weight) and
  /// accumulates the gradient of `slot.own`.
  virtual torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) = 0;
  /// Called by `finish()` for slots whose gradient never arrived.
  virtual void on_unused(detail::Slot& /*slot*/) {}
  /// The true quantized values of `slot` (same dtype and device as the
  /// tensor), bit-identical to what restoring its record produces.
  virtual torch::Tensor quantized_data(const detail::Slot& slot) const = 0;
  /// The stored record of `slot` (name and aliases filled by the caller).
  virtual TensorRecord quantized_record(const detail::Slot& slot) const = 0;
  /// The quantizer's options, as text, for the stored state.
  virtual std::map<std::string, std::string> option_map() const = 0;

  /// A new contiguous buffer shaped like `like`, for the data installed for
  /// one training forward or for a gradient returned by `backward`. Never
  /// kept across steps: the installed data is freed as soon as its gradient
  /// has arrived (the layer's autograd node has released it by then), so a
  /// quantizer's extra memory lives only from the forward to each tensor's
  /// backward, where the latent weights' gradients take its place; and a
  /// returned gradient that nothing else holds becomes the weight's `grad`
  /// without a copy (a buffer kept by the quantizer would be cloned by the
  /// engine). With `diffq::keep_freed_memory()` (the Trainer's default) the
  /// allocation reuses freed heap memory: no page faults.
  static torch::Tensor new_buffer(const torch::Tensor& like);
  /// A buffer for the gradient `backward` returns for `slot`: the installed
  /// data's own buffer when nothing but the slot and the parameter holds it
  /// any more (its values are not needed once the gradient has arrived; a
  /// graph kept for a second backward still holds it, and then a new
  /// buffer is returned). The buffer then passes from the forward to the
  /// weight's gradient, and the next step's installed data takes the
  /// memory of the gradients released before it: the same blocks cycle.
  static torch::Tensor gradient_buffer(const detail::Slot& slot, const torch::Tensor& like);

  /// Bits of the float leftovers (float16/float32). Detected aliases are
  /// not leftovers of their own, so a tied tensor counts once.
  double leftover_bits() const;
  /// True between `training_step()` and the step's `finish()`.
  bool in_training_step() const { return mode_ == Mode::kTraining; }
  /// While `training_data()` runs: the slot whose `training_data()` comes
  /// next in this step (its weights are still its float data), or null.
  const detail::Slot* next_training_slot() const { return next_training_slot_; }

  std::vector<detail::Slot> slots_;
  std::vector<detail::Leftover> leftovers_;
  /// The model's persistent buffers (stored after the parameters).
  std::vector<detail::Buffer> buffers_;
  /// Model order of everything stored: (is slot, index).
  std::vector<std::pair<bool, size_t>> order_;
  DiscoveryOptions discovery_;
  std::string method_;
  int64_t steps_ = 0;

 private:
  friend class TrainingStep;
  friend class QuantizedEvaluation;
  void end_training_step();
  void end_evaluation();
  torch::Tensor on_gradient(size_t storage_index, const torch::Tensor& grad);
  void put_back(detail::Slot& slot);

  enum class Mode { kIdle, kTraining, kEvaluation };
  Mode mode_ = Mode::kIdle;
  const detail::Slot* next_training_slot_ = nullptr;
  /// Per tensor (storage_index): the slot active in this step.
  std::vector<size_t> active_slot_;
  /// Hook handles, per storage_index (only first slots have one).
  std::vector<std::pair<size_t, unsigned>> hooks_;
  std::vector<const void*> registered_;
};

}  // namespace diffq
