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
  /// The paper's plan scaled to a run of `total_steps` steps. The paper
  /// trains 150 epochs: warm-up 5 epochs, period 2 epochs for the first
  /// 72 %, then 15 epochs. Here each length keeps its FRACTION of the run
  /// (warm-up 1/30, early period 1/75, late period 1/10), so any budget sees
  /// as many scheduler runs as the paper's (about 50 early and 3 late ones),
  /// with the same cosine ratio over them. A length of at least one epoch
  /// (`steps_per_epoch`) is rounded to whole epochs, so that the early runs
  /// fall on epoch starts as in the paper (a 150-epoch run gets exactly the
  /// paper's plan); a shorter one to whole steps (at least one). The switch
  /// to the late period stays at `late_from` of the run. Throws
  /// `diffq::Error` unless both counts are positive.
  static SchedulePlan for_budget(int64_t total_steps, int64_t steps_per_epoch);
};

/// New weight candidates of the searchable layers: the floor(ratio · L) most
/// turbulent of the L layers (ties: the lower index first) lose their
/// smallest full candidate when it is at most their `floor_bits` (2; 3 for
/// depthwise) and they keep another one; every other layer gets its full
/// set back (at most one level goes). Throws `diffq::Error` on mismatched
/// sizes, a ratio outside [0, 1], empty or not strictly ascending candidates,
/// or a turbulence that is not a number.
std::vector<std::vector<int>> schedule_candidates(const std::vector<std::vector<int>>& full_candidates,
                                                  const std::vector<double>& turbulence, double ratio,
                                                  const std::vector<int>& floor_bits);

}  // namespace oneshot
}  // namespace diffq
