#pragma once
/// \file lsq_quantizer.h
/// LSQ: learned step size quantization (Esser et al., ICLR 2020).

#include <map>
#include <string>

#include "diffq/quantizer.h"

namespace diffq {

/// Options of `LSQQuantizer`.
struct LSQOptions {
  /// Bit-width of the signed levels, a whole number in 2..16.
  TORCH_ARG(double, bits) = 4;
  /// Which parameters are quantized.
  TORCH_ARG(DiscoveryOptions, discovery) = {};
};

/// LSQ quantizer: w_q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1) · s with
/// one learned step s per tensor, initialised to 2·mean|w| / sqrt(2^(b-1) - 1).
/// Gradients: straight through inside the clamp range (0 outside) for the
/// weights; the LSQ formula for s, scaled by 1 / sqrt(numel · (2^(b-1) - 1)).
/// Size: Σ (bits·numel + 32) over quantized tensors plus the float part.
class LSQQuantizer : public Quantizer {
 public:
  /// Wraps `model`; the steps are the quantizer's trainable parameters.
  explicit LSQQuantizer(const ModelRef& model, LSQOptions options = {});
  ~LSQQuantizer() override = default;

  /// The (constant) size in MiB, as a tensor.
  torch::Tensor model_size() const override;
  /// Size in MiB.
  double true_model_size() const override;
  /// The options in use.
  const LSQOptions& options() const { return options_; }

 protected:
  torch::Tensor training_data(detail::Slot& slot) override;
  torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) override;
  torch::Tensor quantized_data(const detail::Slot& slot) const override;
  TensorRecord quantized_record(const detail::Slot& slot) const override;
  std::map<std::string, std::string> option_map() const override;

 private:
  /// Adds `step_grad` to the step's gradient.
  void add_step_gradient(detail::Slot& slot, const torch::Tensor& step_grad);
  /// Signed levels q = clamp(round(w / s), -Q_N, Q_P) of `w` (float32).
  torch::Tensor signed_levels(const torch::Tensor& w32, float step) const;
  float step_of(const detail::Slot& slot) const;
  LSQOptions options_;
};

}  // namespace diffq
