// The bit-width scheduler of one-shot mixed precision (pure logic).
#include "diffq/oneshot/schedule.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

double shrink_ratio(double progress, double start, double end) {
  const double p = std::min(1.0, std::max(0.0, progress));
  return end + 0.5 * (start - end) * (1.0 + std::cos(M_PI * p));
}

bool SchedulePlan::due(int64_t step) const {
  if (step < warmup_steps || step >= total_steps) return false;
  const auto late_start = static_cast<int64_t>(std::ceil(late_from * double(total_steps)));
  if (step < late_start) return (step - warmup_steps) % std::max<int64_t>(1, early_period) == 0;
  return (step - std::max(late_start, warmup_steps)) % std::max<int64_t>(1, late_period) == 0;
}

namespace {

// `fraction` of `total` steps: whole epochs when that is at least one epoch,
// else whole steps; at least `least`.
int64_t scaled_length(int64_t total, int64_t per_epoch, double fraction, int64_t least) {
  const double steps = fraction * double(total);
  int64_t length = steps >= double(per_epoch) ? per_epoch * std::llround(steps / double(per_epoch))
                                              : std::llround(steps);
  return std::max(least, length);
}

}  // namespace

SchedulePlan SchedulePlan::for_budget(int64_t total_steps, int64_t steps_per_epoch) {
  DIFFQ_CHECK(total_steps > 0 && steps_per_epoch > 0, "the scheduler needs positive step counts, got ",
              total_steps, " steps and ", steps_per_epoch, " per epoch");
  // The paper: 150 epochs, warm-up 5, periods 2 then 15 (fractions of the run).
  constexpr double kPaperEpochs = 150;
  SchedulePlan plan;
  plan.total_steps = total_steps;
  plan.warmup_steps = std::min(total_steps, scaled_length(total_steps, steps_per_epoch, 5 / kPaperEpochs, 0));
  plan.early_period = scaled_length(total_steps, steps_per_epoch, 2 / kPaperEpochs, 1);
  plan.late_period = scaled_length(total_steps, steps_per_epoch, 15 / kPaperEpochs, 1);
  return plan;
}

std::vector<std::vector<int>> schedule_candidates(const std::vector<std::vector<int>>& full_candidates,
                                                  const std::vector<double>& turbulence, double ratio,
                                                  const std::vector<int>& floor_bits) {
  const size_t n = full_candidates.size();
  DIFFQ_CHECK(turbulence.size() == n && floor_bits.size() == n, "the scheduler got ", n, " layers, ",
              turbulence.size(), " turbulence values and ", floor_bits.size(), " floors");
  DIFFQ_CHECK(ratio >= 0 && ratio <= 1, "the scheduler's ratio must be in [0, 1], got ", ratio);
  for (size_t i = 0; i < n; ++i) {
    DIFFQ_CHECK(!full_candidates[i].empty(), "layer ", i, " has no candidate");
    for (size_t k = 1; k < full_candidates[i].size(); ++k)
      DIFFQ_CHECK(full_candidates[i][k] > full_candidates[i][k - 1], "layer ", i,
                  "'s candidates are not strictly ascending");
    DIFFQ_CHECK(std::isfinite(turbulence[i]), "layer ", i, "'s turbulence is not a number");
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return turbulence[a] > turbulence[b]; });
  const auto quota = static_cast<size_t>(std::floor(ratio * double(n) + 1e-9));
  auto out = full_candidates;
  for (size_t k = 0; k < quota && k < n; ++k) {
    auto& c = out[order[k]];
    if (c.size() > 1 && c.front() <= floor_bits[order[k]]) c.erase(c.begin());
  }
  return out;
}

}  // namespace oneshot
}  // namespace diffq
