// Uniform quantization, post-training or with a straight-through estimator.
#include "diffq/uniform_quantizer.h"

#include <cmath>

#include <torch/torch.h>

#include "diffq/error.h"
#include "kernels/fake_quant.h"
#include "option_text.h"
#include "tensor_convert.h"

namespace diffq {

UniformQuantizer::UniformQuantizer(const ModelRef& model, UniformOptions options)
    : Quantizer(model, options.discovery(), "uniform"), options_(std::move(options)) {
  const double b = options_.bits();
  DIFFQ_CHECK(std::isfinite(b) && std::floor(b) == b && b >= 1 && b <= 16,
              "uniform quantization needs a whole number of bits in 1..16, got ", b,
              " (fractional bit-widths cannot be stored)");
  install_hooks();
}

torch::Tensor UniformQuantizer::training_data(detail::Slot& slot) {
  if (!options_.qat()) return torch::Tensor();
  const auto& w = slot.latent;
  if (!(w.device().is_cpu() && w.scalar_type() == torch::kFloat32 && w.is_contiguous())) return quantized_data(slot);
  const auto range = finite_range(w, slot.name);
  if (!(range.second > range.first)) return quantized_data(slot);
  auto out = new_buffer(w);
  kernels::uniform_fake_quant(w.data_ptr<float>(), out.data_ptr<float>(), w.numel(), range.first, range.second,
                              float(std::pow(2.0, options_.bits()) - 1));
  return out;
}

torch::Tensor UniformQuantizer::backward(detail::Slot& /*slot*/, const torch::Tensor& grad) {
  return grad;  // straight-through estimator: identity (the range spans every weight)
}

torch::Tensor UniformQuantizer::quantized_data(const detail::Slot& slot) const {
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  const auto range = finite_range(w32, slot.name);
  if (w32.device().is_cpu() && w32.is_contiguous() && range.second > range.first) {
    auto out = torch::empty_like(w32);
    kernels::uniform_fake_quant(w32.data_ptr<float>(), out.data_ptr<float>(), w32.numel(), range.first,
                                range.second, float(std::pow(2.0, options_.bits()) - 1));
    return out.to(slot.tensor.scalar_type());
  }
  auto denom = torch::full({1, 1}, std::pow(2.0, options_.bits()) - 1, w32.options());
  auto levels = uniform_levels(w32, denom, range.first, range.second);
  return uniform_values(levels, denom, range.first, range.second)
      .view(slot.tensor.sizes())
      .to(slot.tensor.scalar_type());
}

TensorRecord UniformQuantizer::quantized_record(const detail::Slot& slot) const {
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  const auto range = finite_range(w32, slot.name);
  auto denom = torch::full({1, 1}, std::pow(2.0, options_.bits()) - 1, w32.options());
  TensorRecord record;
  record.encoding = Encoding::kUniform;
  record.bits = static_cast<int>(options_.bits());
  record.min = range.first;
  record.max = range.second;
  record.levels = levels_to_vector(uniform_levels(w32, denom, range.first, range.second));
  return record;
}

double UniformQuantizer::true_model_size() const {
  double bits = leftover_bits();
  for (const auto& slot : slots_) {
    bits += options_.bits() * static_cast<double>(slot.tensor.numel()) + 64.0;
  }
  return bits / (8.0 * 1048576.0);
}

torch::Tensor UniformQuantizer::model_size() const {
  return torch::full({}, true_model_size(), torch::kFloat64);
}

std::map<std::string, std::string> UniformQuantizer::option_map() const {
  std::map<std::string, std::string> options{{"bits", std::to_string(static_cast<int>(options_.bits()))},
                                             {"qat", options_.qat() ? "true" : "false"}};
  add_discovery_options(options, options_.discovery());
  return options;
}

}  // namespace diffq
