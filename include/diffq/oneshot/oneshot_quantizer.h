#pragma once
/// \file oneshot_quantizer.h
/// The quantizer of one-shot mixed-precision quantization (Tang et al.,
/// CVPR 2024): every layer's weight can run at any of its candidate
/// bit-widths, each with its own LSQ step; a configuration (`BitConfig`)
/// says which bits each layer uses now.
///
/// \code
///   diffq::oneshot::OneShotQuantizer quantizer(net);
///   quantizer.set_config(quantizer.max_config());
///   { auto step = quantizer.training_step(); loss(net->forward(x)).backward(); }
///   auto layers = quantizer.layers();             // costs need one forward first
///   double cost = diffq::oneshot::bitops(layers, quantizer.config());
/// \endcode
///
/// Layers built from `OneShotConv2d` / `OneShotLinear` (modules.h) also get
/// their input activations quantized and their BatchNorm switched: the
/// quantizer finds the activation quantizer and the switchable BatchNorm
/// among the siblings of the module that holds the weight, and pushes the
/// layer's bits to them. Any other model (plain `torch::nn::Module`,
/// TorchScript) gets weight-only mixed precision (activation bits 0).

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "diffq/oneshot/bit_config.h"
#include "diffq/oneshot/modules.h"
#include "diffq/quantizer.h"

namespace diffq {
namespace oneshot {

/// Options of `OneShotQuantizer`.
struct OneShotOptions {
  /// Weight candidates of the searchable layers without a switchable
  /// BatchNorm (those take its weight candidates), ascending; depthwise
  /// convolutions drop those below 3.
  TORCH_ARG(std::vector<int>, weight_candidates) = default_candidates();
  /// The first quantized weight (stem: float input) and the last one
  /// (classifier: W `fixed_bits`, A `fixed_bits`) are never searched.
  TORCH_ARG(bool, fix_first_last) = true;
  /// Bits of the fixed layers.
  TORCH_ARG(int, fixed_bits) = 8;
  /// Which parameters are quantized. Default: every parameter of two or
  /// more dimensions (conv and linear weights), however small.
  TORCH_ARG(DiscoveryOptions, discovery) = DiscoveryOptions().min_size(0);
  /// Quantize only parameters of two or more dimensions (biases and
  /// BatchNorm parameters stay float).
  TORCH_ARG(bool, matrices_only) = true;
};

/// One-shot mixed-precision quantizer. Its trainable parameters are the
/// weight steps (one tensor of `candidates` steps per layer); activation
/// steps and BatchNorm parameters live in the model's modules.
class OneShotQuantizer : public Quantizer {
 public:
  /// Wraps `model`; every layer starts at its largest candidates.
  /// Weight steps start at max(|μ-3σ|, |μ+3σ|) / 2^(b-1) (spec section 1).
  explicit OneShotQuantizer(const ModelRef& model, OneShotOptions options = {});
  ~OneShotQuantizer() override;

  /// The layers (one per quantized weight, model order): names, current
  /// candidates, weights and MACs per example (from the sizes of the last
  /// forward seen by the layers' activation quantizers; 0 for layers
  /// without one).
  Layers layers() const;
  /// The configuration in use.
  const BitConfig& config() const { return config_; }
  /// Sets every layer's bits (weights, activation quantizer, BatchNorm).
  /// Throws `diffq::Error` naming the layer when a bit-width is not among
  /// its current candidates.
  void set_config(const BitConfig& config);
  /// Every searchable layer at its largest current candidates.
  BitConfig max_config() const;
  /// Every searchable layer's weight and activation bits drawn uniformly
  /// from its current candidates.
  BitConfig random_config(std::mt19937_64& generator) const;

  /// The current weight candidates of layer `layer` (ascending).
  const std::vector<int>& weight_candidates(size_t layer) const;
  /// The full weight candidates of layer `layer` (before any scheduling).
  const std::vector<int>& full_weight_candidates(size_t layer) const;
  /// Replaces the current weight candidates of `layer` by a non-empty
  /// ascending subset of its full ones; the config moves into them.
  void set_weight_candidates(size_t layer, const std::vector<int>& candidates);
  /// The lowest bit-width each searchable layer may lose to the scheduler
  /// (2; 3 for depthwise), -1 for fixed layers.
  std::vector<int> scheduler_floor() const;
  /// Indices of the searchable layers.
  std::vector<size_t> searchable_layers() const;

  /// Turbulence of each layer (spec section 3): over its current weight
  /// candidates b, the fraction of weights farther than 0.375·s_b from
  /// their rounding level (weights beyond the extreme levels do not count),
  /// divided by b, averaged. On the float (training) weights; 0 for fixed layers.
  std::vector<double> turbulence() const;

  /// Starts or stops keeping each layer's BatchNorm output.
  void set_capture(bool capture);
  /// The kept BatchNorm outputs per layer (undefined where there is none).
  std::vector<torch::Tensor> captured_outputs() const;
  /// Information distortion (spec section 4): Σ over layers whose weight
  /// bits are their current lowest candidate and which have a kept output
  /// of MSE(kept output, reference[layer] detached). Zero (a scalar) when
  /// no layer is at its lowest candidate.
  torch::Tensor distortion(const std::vector<torch::Tensor>& reference) const;

  /// The step of layer `layer` for weight bits `bits`.
  double weight_step(size_t layer, int bits) const;
  /// The activation quantizer of a layer (null for weight-only layers).
  ActivationQuantizerImpl* activation_quantizer(size_t layer) const;
  /// The switchable BatchNorm of a layer (null when it has none).
  SwitchableBatchNorm2dImpl* batch_norm(size_t layer) const;

  /// Size in MiB at the current configuration, as a tensor.
  torch::Tensor model_size() const override;
  /// Size in MiB at the current configuration: Σ (bits·numel + 32) over
  /// quantized weights plus the float leftovers.
  double true_model_size() const override;
  /// The options in use.
  const OneShotOptions& options() const { return options_; }

 protected:
  torch::Tensor training_data(detail::Slot& slot) override;
  torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) override;
  torch::Tensor quantized_data(const detail::Slot& slot) const override;
  TensorRecord quantized_record(const detail::Slot& slot) const override;
  std::map<std::string, std::string> option_map() const override;

 private:
  struct Layer;
  /// Index of the candidate `bits` among the layer's full weight candidates.
  size_t step_index(size_t layer, int bits) const;
  float current_step(size_t layer) const;
  size_t layer_of(const detail::Slot& slot) const;
  OneShotOptions options_;
  std::vector<Layer> layers_;
  BitConfig config_;
};

/// Sets the activation bits and BatchNorm selection of a restored one-shot
/// model's layers from the configuration its model file stores (option
/// "config", written by `OneShotQuantizer`): the modules `<layer>.act` and
/// `<layer>.bn`. Returns false (nothing done) when the options hold no
/// configuration; throws `diffq::Error` when it does not fit the model.
bool apply_stored_config(torch::nn::Module& model, const std::map<std::string, std::string>& options);

}  // namespace oneshot
}  // namespace diffq
