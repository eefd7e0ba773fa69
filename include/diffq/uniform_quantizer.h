#pragma once
/// \file uniform_quantizer.h
/// Uniform quantization: post-training (PTQ) and quantization-aware training
/// with a straight-through estimator (QAT).

#include <map>
#include <string>

#include "diffq/quantizer.h"

namespace diffq {

/// Options of `UniformQuantizer`.
struct UniformOptions {
  /// Bit-width of every quantized tensor, a whole number in 1..16.
  TORCH_ARG(double, bits) = 8;
  /// Quantization-aware training: the training forward sees the quantized
  /// weights, and the gradient passes straight through to the float ones.
  /// False: post-training quantization (training steps leave weights float).
  TORCH_ARG(bool, qat) = false;
  /// Which parameters are quantized.
  TORCH_ARG(DiscoveryOptions, discovery) = {};
};

/// Uniform min/max quantizer with one bit-width for the whole model.
/// Size: Σ (bits·numel + 64) over quantized tensors plus the float part.
class UniformQuantizer : public Quantizer {
 public:
  /// Wraps `model`.
  explicit UniformQuantizer(const ModelRef& model, UniformOptions options = {});
  ~UniformQuantizer() override = default;

  /// The (constant) size in MiB, as a tensor.
  torch::Tensor model_size() const override;
  /// Size in MiB.
  double true_model_size() const override;
  /// The options in use.
  const UniformOptions& options() const { return options_; }

 protected:
  torch::Tensor training_data(detail::Slot& slot) override;
  torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) override;
  torch::Tensor quantized_data(const detail::Slot& slot) const override;
  TensorRecord quantized_record(const detail::Slot& slot) const override;
  std::map<std::string, std::string> option_map() const override;

 private:
  UniformOptions options_;
};

}  // namespace diffq
