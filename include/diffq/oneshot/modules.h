#pragma once
/// \file modules.h
/// The modules of one-shot mixed-precision quantization that a quantizer
/// cannot add from outside: an activation quantizer in the autograd graph
/// and a BatchNorm switched by the layer's bit-widths, plus the layer
/// blocks that hold them with a convolution or a linear layer.
///
/// A layer of a one-shot network is a module with three children: the
/// activation quantizer of its input (`act`), the convolution or linear
/// layer whose weight `OneShotQuantizer` quantizes (`conv` / `linear`), and
/// optionally a switchable BatchNorm of its output (`bn`). The quantizer
/// finds them by name: the siblings of the module holding a quantized weight.
///
/// \code
///   auto layer = diffq::oneshot::OneShotConv2d(
///       diffq::oneshot::OneShotConv2dOptions(16, 32, 3).stride(2).padding(1));
///   // forward: bn(conv(act(x))); the quantizer sets the bits of all three.
/// \endcode

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace diffq {
namespace oneshot {

/// The candidate bit-widths of the paper: 2 to 6.
std::vector<int> default_candidates();

/// Options of `ActivationQuantizer`.
struct ActivationQuantizerOptions {
  /// Candidate bit-widths, ascending, each in 1..16 (1 only when signed is false).
  TORCH_ARG(std::vector<int>, candidates) = default_candidates();
  /// Signed levels [-2^(b-1), 2^(b-1) - 1] (inputs that are not post-ReLU);
  /// else unsigned [0, 2^b - 1].
  TORCH_ARG(bool, is_signed) = false;
};

/// LSQ on activations (Esser et al. 2020) with one learned step per
/// candidate bit-width: x_q = round(clamp(x / s_b, -Q_N, Q_P)) · s_b, the
/// rounding straight through, no gradient scaling. Only the step of the
/// current bit-width gets gradient. A step is initialised the first time its
/// bit-width runs: s_b = 2·mean|x| / sqrt(Q_P). Bits 0 = pass-through
/// (float). Parameter `steps` [candidates], buffer `initialized` (bool).
class ActivationQuantizerImpl : public torch::nn::Cloneable<ActivationQuantizerImpl> {
 public:
  /// A quantizer with `options`; starts in float (bits 0) until a quantizer
  /// sets its bits, so a float pretraining of the model is plain float.
  explicit ActivationQuantizerImpl(ActivationQuantizerOptions options = {});
  /// (Re)creates the steps (1.0, not initialised) and the flags.
  void reset() override;
  /// Quantizes `x` at the current bit-width (records `x`'s sizes).
  torch::Tensor forward(const torch::Tensor& x);
  /// Sets the bit-width: one of the candidates, or 0 for float.
  void set_bits(int bits);
  /// The current bit-width (0 = float).
  int bits() const { return bits_; }
  /// Position of `bits` in the candidates; throws `diffq::Error` if absent.
  size_t index_of(int bits) const;
  /// Sizes of the last input (empty before the first forward).
  const std::vector<int64_t>& last_input_sizes() const { return last_input_sizes_; }
  /// The options.
  ActivationQuantizerOptions options;
  /// Learned steps, one per candidate.
  torch::Tensor steps;
  /// Whether each candidate's step was initialised from data.
  torch::Tensor initialized;

 private:
  int bits_ = 0;
  std::vector<int64_t> last_input_sizes_;
};
/// Module holder of `ActivationQuantizerImpl`.
TORCH_MODULE(ActivationQuantizer);

/// Options of `SwitchableBatchNorm2d`.
struct SwitchableBatchNormOptions {
  /// Channels.
  SwitchableBatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT
  /// Channels.
  TORCH_ARG(int64_t, num_features);
  /// The layer's weight candidates (ascending).
  TORCH_ARG(std::vector<int>, weight_candidates) = default_candidates();
  /// The layer's activation candidates (ascending); ignored with `by_weight_bits`.
  TORCH_ARG(std::vector<int>, activation_candidates) = default_candidates();
  /// One BatchNorm per weight bit-width instead of one per (weight,
  /// activation) pair: more updates each in a short budget.
  TORCH_ARG(bool, by_weight_bits) = false;
  /// Momentum of the running statistics.
  TORCH_ARG(double, momentum) = 0.1;
  /// Epsilon of the normalisation.
  TORCH_ARG(double, eps) = 1e-5;
};

/// A BatchNorm2d per bit pair of its layer (or per weight bit-width),
/// registered as children named "w<W>a<A>" (or "w<W>"); `select` chooses the
/// one that runs. Can keep its last output for the distortion loss (IDM).
class SwitchableBatchNorm2dImpl : public torch::nn::Cloneable<SwitchableBatchNorm2dImpl> {
 public:
  /// One BatchNorm2d per bit pair of `options`.
  explicit SwitchableBatchNorm2dImpl(SwitchableBatchNormOptions options);
  /// (Re)creates the BatchNorm layers; the largest pair is selected.
  void reset() override;
  /// Normalises with the selected BatchNorm; keeps the output when capturing.
  torch::Tensor forward(const torch::Tensor& x);
  /// Selects the BatchNorm of (weight bits, activation bits); throws
  /// `diffq::Error` when the pair is not one of the candidates.
  void select(int weight_bits, int activation_bits);
  /// Index of the BatchNorm of a pair in `norms()`; throws when absent.
  size_t index_of(int weight_bits, int activation_bits) const;
  /// The selected index.
  size_t selected() const { return selected_; }
  /// The BatchNorm layers, in registration order.
  const std::vector<torch::nn::BatchNorm2d>& norms() const { return norms_; }
  /// The selected BatchNorm layer.
  torch::nn::BatchNorm2d& selected_norm() { return norms_.at(selected_); }
  /// Name of the child of a pair ("w4a3", or "w4" by weight bits).
  std::string child_name(int weight_bits, int activation_bits) const;
  /// Copies the selected BatchNorm's parameters and running statistics into
  /// every other one (a float-pretrained model's BatchNorm, the one it
  /// trained, becomes the start of every bit pair).
  void copy_selected_to_all();
  /// Starts (true) or stops keeping the output of each forward.
  void set_capture(bool capture);
  /// The last output kept (undefined when not capturing).
  const torch::Tensor& captured() const { return captured_; }
  /// The options.
  SwitchableBatchNormOptions options;

 private:
  std::vector<torch::nn::BatchNorm2d> norms_;
  size_t selected_ = 0;
  bool capture_ = false;
  torch::Tensor captured_;
};
/// Module holder of `SwitchableBatchNorm2dImpl`.
TORCH_MODULE(SwitchableBatchNorm2d);

/// Options of `OneShotConv2d`.
struct OneShotConv2dOptions {
  /// Input channels, output channels, square kernel size.
  OneShotConv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  /// Input channels.
  TORCH_ARG(int64_t, in_channels);
  /// Output channels.
  TORCH_ARG(int64_t, out_channels);
  /// Square kernel size.
  TORCH_ARG(int64_t, kernel_size);
  /// Stride.
  TORCH_ARG(int64_t, stride) = 1;
  /// Zero padding.
  TORCH_ARG(int64_t, padding) = 0;
  /// Dilation (kept in the quantized forward).
  TORCH_ARG(int64_t, dilation) = 1;
  /// Groups (in_channels = groups: depthwise).
  TORCH_ARG(int64_t, groups) = 1;
  /// Add a bias (kept in the quantized forward, stays float).
  TORCH_ARG(bool, bias) = false;
  /// Weight candidates (ascending).
  TORCH_ARG(std::vector<int>, weight_candidates) = default_candidates();
  /// Activation candidates (ascending).
  TORCH_ARG(std::vector<int>, activation_candidates) = default_candidates();
  /// The input is not post-ReLU: signed activation levels.
  TORCH_ARG(bool, signed_input) = false;
  /// Follow the convolution with a switchable BatchNorm.
  TORCH_ARG(bool, batch_norm) = true;
  /// BatchNorm per weight bit-width (`SwitchableBatchNormOptions::by_weight_bits`).
  TORCH_ARG(bool, bn_by_weight_bits) = false;
};

/// Activation quantizer, convolution, switchable BatchNorm: bn(conv(act(x))).
class OneShotConv2dImpl : public torch::nn::Cloneable<OneShotConv2dImpl> {
 public:
  /// The layer of `options`.
  explicit OneShotConv2dImpl(OneShotConv2dOptions options);
  /// (Re)creates the children.
  void reset() override;
  /// bn(conv(act(x))) (no BatchNorm when the options say so).
  torch::Tensor forward(const torch::Tensor& x);
  /// The options.
  OneShotConv2dOptions options;
  /// Input quantizer.
  ActivationQuantizer act{nullptr};
  /// The convolution (its weight is quantized by `OneShotQuantizer`).
  torch::nn::Conv2d conv{nullptr};
  /// Output normalisation (null without BatchNorm).
  SwitchableBatchNorm2d bn{nullptr};
};
/// Module holder of `OneShotConv2dImpl`.
TORCH_MODULE(OneShotConv2d);

/// Options of `OneShotLinear`.
struct OneShotLinearOptions {
  /// Input and output features.
  OneShotLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  /// Input features.
  TORCH_ARG(int64_t, in_features);
  /// Output features.
  TORCH_ARG(int64_t, out_features);
  /// Add a bias (stays float).
  TORCH_ARG(bool, bias) = true;
  /// Activation candidates (ascending; {8} for a fixed W8A8 classifier).
  TORCH_ARG(std::vector<int>, activation_candidates) = default_candidates();
  /// The input is not post-ReLU: signed activation levels.
  TORCH_ARG(bool, signed_input) = false;
};

/// Activation quantizer then linear layer: linear(act(x)).
class OneShotLinearImpl : public torch::nn::Cloneable<OneShotLinearImpl> {
 public:
  /// The layer of `options`.
  explicit OneShotLinearImpl(OneShotLinearOptions options);
  /// (Re)creates the children.
  void reset() override;
  /// linear(act(x)).
  torch::Tensor forward(const torch::Tensor& x);
  /// The options.
  OneShotLinearOptions options;
  /// Input quantizer.
  ActivationQuantizer act{nullptr};
  /// The linear layer (its weight is quantized by `OneShotQuantizer`).
  torch::nn::Linear linear{nullptr};
};
/// Module holder of `OneShotLinearImpl`.
TORCH_MODULE(OneShotLinear);

}  // namespace oneshot
}  // namespace diffq
