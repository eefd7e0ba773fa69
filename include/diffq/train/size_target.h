#pragma once
/// \file size_target.h
/// Target-size mode of DiffQ: the size penalty λ becomes a Lagrange
/// multiplier adapted during training so that a run ends at the size asked
/// for (torch-free logic; the `Trainer` feeds it).
///
/// Dual ascent in log space: after each step, with m the measured size and
/// r the reference,
///
///     λ ← clamp(λ · exp(rate · clamp(m / r − 1, −1, 1)), min_lambda, max_lambda)
///
/// The reference r moves linearly from the size at the start to the target
/// over the warm-up steps, then stays at the target, so that λ follows the
/// bits down instead of racing ahead of them (the bits can only move as fast
/// as their optimizer lets them).

#include <cstdint>

namespace diffq {
namespace train {

/// The Lagrange multiplier of a size constraint `measure ≤ target`.
class SizeController {
 public:
  /// `start`: the measure at step 0; `target`: where it must end (> 0);
  /// `warmup_steps`: steps over which the reference moves from `start` to
  /// `target` (0 = at once); `rate`: step of log λ per unit of relative
  /// excess (> 0); `lambda`: the initial multiplier (> 0).
  SizeController(double start, double target, int64_t warmup_steps, double rate, double lambda);
  /// The reference the measure is held to after `step` steps.
  double reference(int64_t step) const;
  /// One dual-ascent update after step `step` with the measure `measure`;
  /// returns the new λ.
  double update(int64_t step, double measure);
  /// The current λ.
  double lambda() const { return lambda_; }
  /// Sets λ (when resuming from a checkpoint).
  void set_lambda(double lambda);
  /// The target.
  double target() const { return target_; }

  /// Bounds of λ.
  static constexpr double kMinLambda = 1e-6;
  /// See `kMinLambda`.
  static constexpr double kMaxLambda = 1e6;

 private:
  double start_, target_;
  int64_t warmup_steps_;
  double rate_, lambda_;
};

}  // namespace train
}  // namespace diffq
