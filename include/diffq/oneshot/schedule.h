#pragma once
/// \file schedule.h
/// The bit-width scheduler of one-shot mixed precision (spec one-shot-mpq.md
/// section 3), as pure logic: when it runs, how many layers lose their
/// lowest weight candidate, and which ones. Torch-free.

#include <cstdint>
#include <vector>

namespace diffq {
namespace oneshot {

/// Fraction of the searchable layers that lose their lowest candidate at
/// `progress` in [0, 1] of the run: a cosine from `start` to `end`.
double shrink_ratio(double progress, double start = 0.5, double end = 0.2);

/// When the scheduler runs, in optimizer steps.
struct SchedulePlan {
  /// Steps of the whole run.
  int64_t total_steps = 0;
  /// No scheduling before this step.
  int64_t warmup_steps = 0;
  /// Period before `late_from · total_steps`.
  int64_t early_period = 1;
  /// Period from then on.
  int64_t late_period = 1;
  /// Fraction of the run where the long period starts.
  double late_from = 0.72;
  /// True at the steps where the scheduler runs: from the warm-up on, every
  /// `early_period` steps, then every `late_period` steps (counted from the
  /// switch) once `late_from · total_steps` is reached.
  bool due(int64_t step) const;
  /// The paper's plan (warm-up of one epoch, period 2 epochs for the first
  /// 72 % of the run, then 15 epochs) with an epoch of `steps_per_epoch`
  /// steps; periods are at least one step.
  static SchedulePlan for_budget(int64_t total_steps, int64_t steps_per_epoch);
};

/// New weight candidates of the searchable layers: the floor(ratio · L) most
/// turbulent of the L layers (ties: the lower index first) lose their
/// smallest full candidate when it is at most their `floor_bits` (2; 3 for
/// depthwise) and they keep another one; every other layer gets its full
/// set back. Throws `diffq::Error` on mismatched sizes or a ratio outside [0, 1].
std::vector<std::vector<int>> schedule_candidates(const std::vector<std::vector<int>>& full_candidates,
                                                  const std::vector<double>& turbulence, double ratio,
                                                  const std::vector<int>& floor_bits);

}  // namespace oneshot
}  // namespace diffq
