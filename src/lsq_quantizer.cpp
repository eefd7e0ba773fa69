// LSQ: learned step size quantization.
#include "diffq/lsq_quantizer.h"

#include <cmath>

#include <torch/torch.h>

#include "diffq/error.h"
#include "kernels/fake_quant.h"
#include "option_text.h"
#include "tensor_convert.h"

namespace diffq {

namespace {
double positive_levels(double bits) { return std::pow(2.0, bits - 1) - 1; }
double negative_levels(double bits) { return std::pow(2.0, bits - 1); }

// Float32 contiguous CPU tensors go through the fused kernels.
bool fused(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
}
}  // namespace

LSQQuantizer::LSQQuantizer(const ModelRef& model, LSQOptions options)
    : Quantizer(model, options.discovery(), "lsq"), options_(std::move(options)) {
  const double b = options_.bits();
  DIFFQ_CHECK(std::isfinite(b) && std::floor(b) == b && b >= 2 && b <= 16,
              "LSQ needs a whole number of bits in 2..16, got ", b);
  const double qp = positive_levels(b);
  torch::NoGradGuard no_grad;
  for (auto& slot : slots_) {
    finite_range(slot.tensor, slot.name);
    double init = 2.0 * slot.tensor.detach().abs().mean().item<double>() / std::sqrt(qp);
    if (!(init > 0)) init = 1e-8;  // all-zero tensor: any positive step represents it
    slot.own = torch::full({}, init,
                           torch::TensorOptions().dtype(torch::kFloat32).device(slot.tensor.device()))
                   .requires_grad_(true);
  }
  install_hooks();
}

float LSQQuantizer::step_of(const detail::Slot& slot) const {
  const float step = slot.own.detach().item<float>();
  DIFFQ_CHECK(std::isfinite(step) && step > 0, "LSQ step of '", slot.name,
              "' is not a positive number (", step, "); lower the learning rate");
  return step;
}

torch::Tensor LSQQuantizer::signed_levels(const torch::Tensor& w32, float step) const {
  const double qn = negative_levels(options_.bits());
  const double qp = positive_levels(options_.bits());
  return torch::clamp(torch::round(w32 / step), -qn, qp);
}

torch::Tensor LSQQuantizer::training_data(detail::Slot& slot) {
  if (!fused(slot.latent)) return quantized_data(slot);
  auto out = new_buffer(slot.latent);
  // The weights' check in the same pass (the buffer is dropped when it fails).
  const bool finite =
      kernels::lsq_forward(slot.latent.data_ptr<float>(), out.data_ptr<float>(), out.numel(), step_of(slot),
                           float(negative_levels(options_.bits())), float(positive_levels(options_.bits())));
  DIFFQ_CHECK(finite, "parameter '", slot.name, "' contains NaN or infinite values; it cannot be quantized");
  return out;
}

torch::Tensor LSQQuantizer::backward(detail::Slot& slot, const torch::Tensor& grad) {
  const double qn = negative_levels(options_.bits());
  const double qp = positive_levels(options_.bits());
  const float step = step_of(slot);
  const double scale = 1.0 / std::sqrt(static_cast<double>(slot.latent.numel()) * qp);
  if (fused(slot.latent) && fused(grad)) {
    auto out = gradient_buffer(slot, grad);
    const double sum = kernels::lsq_backward(slot.latent.data_ptr<float>(), grad.data_ptr<float>(),
                                             out.data_ptr<float>(), grad.numel(), step, float(qn), float(qp));
    add_step_gradient(slot, torch::full({}, sum * scale, slot.own.options().requires_grad(false)));
    return out;
  }
  auto v = slot.latent.to(grad.scalar_type()) / step;
  auto below = v <= -qn;
  auto above = v >= qp;
  auto inside = torch::logical_not(torch::logical_or(below, above));
  // d w_q / d s: round(v) - v inside, -Q_N below, Q_P above.
  auto dstep = torch::where(inside, torch::round(v) - v,
                            torch::where(below, torch::full({}, -qn, v.options()),
                                         torch::full({}, qp, v.options())));
  add_step_gradient(slot, ((grad * dstep).sum() * scale).to(slot.own.scalar_type()));
  return grad * inside.to(grad.scalar_type());
}

void LSQQuantizer::add_step_gradient(detail::Slot& slot, const torch::Tensor& step_grad) {
  auto& own_grad = slot.own.mutable_grad();
  if (own_grad.defined()) {
    own_grad.add_(step_grad);
  } else {
    own_grad = step_grad.detach().clone();
  }
}

torch::Tensor LSQQuantizer::quantized_data(const detail::Slot& slot) const {
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  finite_range(w32, slot.name);
  const float step = step_of(slot);
  if (fused(w32)) {
    auto out = torch::empty_like(w32);
    kernels::lsq_forward(w32.data_ptr<float>(), out.data_ptr<float>(), w32.numel(), step,
                         float(negative_levels(options_.bits())), float(positive_levels(options_.bits())));
    return out.to(slot.tensor.scalar_type());
  }
  return signed_levels(w32, step).mul(step).add(0.0).view(slot.tensor.sizes()).to(slot.tensor.scalar_type());
}

TensorRecord LSQQuantizer::quantized_record(const detail::Slot& slot) const {
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  finite_range(w32, slot.name);
  const float step = step_of(slot);
  TensorRecord record;
  record.encoding = Encoding::kLSQ;
  record.bits = static_cast<int>(options_.bits());
  record.step = step;
  record.levels = levels_to_vector(signed_levels(w32, step) + negative_levels(options_.bits()));
  return record;
}

double LSQQuantizer::true_model_size() const {
  double bits = leftover_bits();
  for (const auto& slot : slots_) {
    bits += options_.bits() * static_cast<double>(slot.tensor.numel()) + 32.0;
  }
  return bits / (8.0 * 1048576.0);
}

torch::Tensor LSQQuantizer::model_size() const {
  return torch::full({}, true_model_size(), torch::kFloat64);
}

std::map<std::string, std::string> LSQQuantizer::option_map() const {
  std::map<std::string, std::string> options{{"bits", std::to_string(static_cast<int>(options_.bits()))}};
  add_discovery_options(options, options_.discovery());
  return options;
}

}  // namespace diffq
