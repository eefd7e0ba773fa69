#pragma once
/// \file oneshot_step.h
/// The training step of one-shot mixed-precision quantization (spec
/// one-shot-mpq.md section 2): the max path, K random paths distilled from
/// it with the distortion loss, clipping by value, and the bit-width
/// scheduler at its due steps. Used by the method "oneshot".

#include <cstdint>

#include <torch/arg.h>

#include "diffq/train/loop.h"

namespace diffq {
namespace train {

/// Options of `OneShotStep`.
struct OneShotStepOptions {
  /// Random paths per step after the max path (K).
  TORCH_ARG(int64_t, random_paths) = 3;
  /// Weight of the distillation term on a random path: loss = (1 - w)·CE + w·KL.
  TORCH_ARG(double, distillation) = 0.5;
  /// Weight of the information distortion term (IDM); 0 = off.
  TORCH_ARG(double, distortion) = 0.01;
  /// Gradients are clipped to [-clip, clip] element-wise (0 = off).
  TORCH_ARG(double, clip_value) = 1.0;
  /// Run the bit-width scheduler (drops the lowest weight candidate of the
  /// most turbulent layers).
  TORCH_ARG(bool, scheduler) = true;
  /// Steps per epoch of the run (the scheduler's periods are scaled to it;
  /// 0 = a tenth of the run).
  TORCH_ARG(int64_t, steps_per_epoch) = 0;
  /// Seed of the random paths (a path is a function of seed, step and index).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// One optimizer step of the coupled network (1 + K forward/backward passes).
/// The trainer's quantizer must be a `oneshot::OneShotQuantizer`.
class OneShotStep : public StepStrategy {
 public:
  /// A step with `options`.
  explicit OneShotStep(OneShotStepOptions options = {}) : options_(options) {}
  /// See `StepStrategy::compute_gradients`. Returns the max path's outputs
  /// and cross-entropy.
  StepResult compute_gradients(Trainer& trainer, const Batch& batch) override;
  /// Clips the (averaged) gradients element-wise to ±`clip_value`.
  void finish_gradients(Trainer& trainer) override;
  /// Applies the bit-width scheduler for `global_step` of `total_steps` when
  /// it is due (also what a resumed run replays); true when it ran.
  bool schedule(Trainer& trainer, int64_t global_step, int64_t total_steps);
  /// The options.
  const OneShotStepOptions& options() const { return options_; }

 private:
  OneShotStepOptions options_;
};

}  // namespace train
}  // namespace diffq
