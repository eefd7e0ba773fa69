// The Trainer's target-size mode and frozen-bits phase (DiffQ): λ as a
// Lagrange multiplier, the bits shifted onto the target and frozen.
#include <cmath>

#include <torch/torch.h>

#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/train/loop.h"

namespace diffq {
namespace train {

namespace {

bool has_target(const MethodOptions& o) { return o.target_mib > 0 || o.target_bits > 0; }

// The target and what it measures.
double target_of(const MethodOptions& o) { return o.target_mib > 0 ? o.target_mib : o.target_bits; }
DiffQuantizer::Measure measure_of(const MethodOptions& o) {
  return o.target_mib > 0 ? DiffQuantizer::Measure::kTrueSizeMiB : DiffQuantizer::Measure::kMeanBits;
}

}  // namespace

void Trainer::init_size_target() {
  const auto& mo = options_.method_options();
  if (mo.effective_frozen_fraction() == 0 && !has_target(mo)) return;
  DIFFQ_CHECK(dynamic_cast<DiffQuantizer*>(quantizer_.get()) != nullptr,
              "a target size and frozen bits need --method diffq, not ", method_->name);
  if (!has_target(mo)) return;
  target_start_ = target_measure(/*smooth=*/true);
  // Refused now rather than after training, where the bits are shifted.
  const double floor = dynamic_cast<DiffQuantizer&>(*quantizer_).smallest(measure_of(mo));
  DIFFQ_CHECK(floor <= target_of(mo), "the target ", target_of(mo), mo.target_mib > 0 ? " MiB" : " bits",
              " is below what every group at min_bits gives (", floor, "); lower --min-bits or raise the target");
}

bool Trainer::bits_frozen() const {
  const auto* d = dynamic_cast<const DiffQuantizer*>(quantizer_.get());
  return d != nullptr && d->bits_frozen();
}

double Trainer::target_measure(bool smooth) const {
  torch::NoGradGuard no_grad;  // a measurement: no graph for the size estimate
  const auto& d = dynamic_cast<const DiffQuantizer&>(*quantizer_);
  if (options_.method_options().target_mib > 0) {
    return smooth ? d.model_size().item<double>() : d.true_model_size();
  }
  return smooth ? d.soft_mean_bits() : d.mean_bits();
}

int64_t Trainer::freeze_step() const {
  const auto& mo = options_.method_options();
  const int64_t total = options_.total_steps();
  const double fraction = mo.effective_frozen_fraction();
  if (total <= 0 || (!has_target(mo) && fraction == 0)) return -1;
  return total - std::llround(fraction * double(total));
}

void Trainer::freeze_bits_if_due(bool shift) {
  auto* d = dynamic_cast<DiffQuantizer*>(quantizer_.get());
  if (d == nullptr || d->bits_frozen()) return;
  const int64_t at = freeze_step();
  if (at < 0 || global_step_ < at) return;
  const auto& mo = options_.method_options();
  if (shift && has_target(mo)) {
    d->shift_bits_to(target_of(mo), measure_of(mo));
  }
  d->freeze_bits();
}

void Trainer::update_size_penalty() {
  const auto& mo = options_.method_options();
  if (!has_target(mo) || bits_frozen()) return;
  if (!size_target_) {
    const int64_t total = std::max<int64_t>(options_.total_steps(), 1);
    const auto warmup = std::llround(mo.number("target_warmup", 0.3) * double(total));
    size_target_ = std::make_unique<SizeController>(target_start_, target_of(mo),
                                                    warmup, mo.number("target_rate", 0.05),
                                                    lambda_ > 0 ? lambda_ : 1.0);
  }
  lambda_ = size_target_->update(global_step_, target_measure(/*smooth=*/true));
}

}  // namespace train
}  // namespace diffq
