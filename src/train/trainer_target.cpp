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

}  // namespace

void Trainer::init_size_target() {
  const auto& mo = options_.method_options();
  if (mo.effective_frozen_fraction() == 0 && !has_target(mo)) return;
  DIFFQ_CHECK(dynamic_cast<DiffQuantizer*>(quantizer_.get()) != nullptr,
              "a target size and frozen bits need --method diffq, not ", method_->name);
  if (!has_target(mo)) return;
  target_start_ = target_measure(/*smooth=*/true);
  // Refused now rather than after training, where the bits are shifted.
  auto& d = dynamic_cast<DiffQuantizer&>(*quantizer_);
  const bool mib = mo.target_mib > 0;
  const double floor = d.smallest(mib ? DiffQuantizer::Measure::kTrueSizeMiB : DiffQuantizer::Measure::kMeanBits);
  DIFFQ_CHECK(floor <= (mib ? mo.target_mib : mo.target_bits), "the target ", mib ? mo.target_mib : mo.target_bits,
              mib ? " MiB" : " bits", " is below what every group at min_bits gives (", floor,
              "); lower --min-bits or raise the target");
}

bool Trainer::bits_frozen() const {
  const auto* d = dynamic_cast<const DiffQuantizer*>(quantizer_.get());
  return d != nullptr && d->bits_frozen();
}

double Trainer::target_measure(bool smooth) const {
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
    d->shift_bits_to(mo.target_mib > 0 ? mo.target_mib : mo.target_bits,
                     mo.target_mib > 0 ? DiffQuantizer::Measure::kTrueSizeMiB : DiffQuantizer::Measure::kMeanBits);
  }
  d->freeze_bits();
}

void Trainer::update_size_penalty() {
  const auto& mo = options_.method_options();
  if (!has_target(mo) || bits_frozen()) return;
  if (!size_target_) {
    const int64_t total = std::max<int64_t>(options_.total_steps(), 1);
    const auto warmup = std::llround(mo.number("target_warmup", 0.3) * double(total));
    size_target_ = std::make_unique<SizeController>(target_start_, mo.target_mib > 0 ? mo.target_mib : mo.target_bits,
                                                    warmup, mo.number("target_rate", 0.05),
                                                    lambda_ > 0 ? lambda_ : 1.0);
  }
  lambda_ = size_target_->update(global_step_, target_measure(/*smooth=*/true));
}

}  // namespace train
}  // namespace diffq
