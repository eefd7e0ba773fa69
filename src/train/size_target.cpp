// Target-size mode: λ as a Lagrange multiplier (see diffq/train/size_target.h).
#include "diffq/train/size_target.h"

#include <algorithm>
#include <cmath>

#include "diffq/error.h"

namespace diffq {
namespace train {

SizeController::SizeController(double start, double target, int64_t warmup_steps, double rate, double lambda)
    : start_(start), target_(target), warmup_steps_(warmup_steps), rate_(rate), lambda_(lambda) {
  DIFFQ_CHECK(std::isfinite(start) && start > 0, "the starting size must be positive, not ", start);
  DIFFQ_CHECK(std::isfinite(target) && target > 0, "the target size must be positive, not ", target);
  DIFFQ_CHECK(warmup_steps >= 0, "the warm-up must be zero or more steps, not ", warmup_steps);
  DIFFQ_CHECK(std::isfinite(rate) && rate > 0, "the target's rate must be positive, not ", rate);
  set_lambda(lambda);
}

double SizeController::reference(int64_t step) const {
  if (step >= warmup_steps_) return target_;
  const double t = double(std::max<int64_t>(step, 0)) / double(warmup_steps_);
  return start_ + (target_ - start_) * t;
}

double SizeController::update(int64_t step, double measure) {
  DIFFQ_CHECK(std::isfinite(measure), "the measured size is not finite at step ", step);
  const double excess = std::clamp(measure / reference(step) - 1.0, -1.0, 1.0);
  lambda_ = std::clamp(lambda_ * std::exp(rate_ * excess), kMinLambda, kMaxLambda);
  return lambda_;
}

void SizeController::set_lambda(double lambda) {
  DIFFQ_CHECK(std::isfinite(lambda) && lambda > 0, "λ must be a positive number, not ", lambda);
  lambda_ = std::clamp(lambda, kMinLambda, kMaxLambda);
}

}  // namespace train
}  // namespace diffq
