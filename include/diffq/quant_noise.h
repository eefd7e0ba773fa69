#pragma once
/// \file quant_noise.h
/// Quant-Noise (Fan et al., ICLR 2021) with scalar and iterative product
/// quantization (iPQ), in the quantizer framework of `quantizer.h`.
///
/// Semantics: docs/results/quant_noise.md and the spec (quant-noise.md).
///
/// \code
///   diffq::QuantNoiseQuantizer q(net, diffq::QuantNoiseOptions()
///                                       .mode(diffq::QuantNoiseMode::kIPQ).p(0.1));
///   for (const auto& stage : q.stages_by_depth(3)) {
///     auto centroids = q.quantize_stage(stage);      // k-means, assignments frozen
///     optimizer.add_param_group({centroids, ...});   // or q.make_optimizer(lr)
///     for (batch : loader) {                          // float layers: proxy-drop noise;
///       auto step = q.training_step();               // PQ layers: their centroids
///       ... loss.backward(); step.finish(); optimizer.step();
///     }
///   }
///   auto scope = q.quantized_evaluation();           // every layer decoded
/// \endcode
///
/// Blocks (spec section 2), contiguous in the flattened weight:
/// - 2-D (Linear, Embedding) `[out, in]`: `block_size` entries of one row;
/// - 1×1 conv `[out, in, 1, 1]` (and 1-D conv with kernel 1): `block_size`
///   input channels of one filter;
/// - k×k conv `[out, in, kh, kw]` (and `[out, in, k]`): noise blocks are whole
///   kernels; PQ subvectors are `conv_block_size` entries of the flattened
///   filter (0 = kh·kw, one kernel per subvector).
/// For the block modes (kProxyDrop, kIPQ), a discovered parameter whose shape
/// has no block layout (1-D biases and norms, rows not divisible by the block
/// size) is moved to the float leftovers (see `float_names()`). The scalar
/// modes quantize every discovered parameter.
///
/// The latent float weights are never modified: the training forward sees
/// the noisy (or quantized) data installed by the framework, and the float
/// data is put back during `backward()`.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "diffq/quantizer.h"

namespace diffq {

/// The noise / quantizer of `QuantNoiseQuantizer`.
enum class QuantNoiseMode {
  /// Block proxy drop only: selected blocks zeroed, the others scaled by
  /// 1/(1-p), identity gradient. Evaluation and storage are float.
  kProxyDrop,
  /// Scalar 4-bit: per-element Bernoulli(p) fake quantization, STE with clamp.
  kScalarInt4,
  /// Scalar 8-bit.
  kScalarInt8,
  /// Iterative product quantization: proxy-drop noise on the layers still in
  /// float, k-means per layer by stages (`quantize_stage`), centroid
  /// fine-tuning with frozen assignments.
  kIPQ,
};

/// How the gradient of a centroid is reduced over its assigned blocks.
enum class CentroidReduction {
  /// dL/dc = Σ of the gradients of the blocks assigned to c (the exact
  /// gradient of the loss with respect to the shared centroid; default).
  kSum,
  /// dL/dc = mean of those gradients (fairseq's choice in effect once Adam
  /// normalises; keeps the step of popular centroids at the scale of a block).
  kMean,
};

/// "proxy_drop", "int4", "int8" or "ipq".
const char* quant_noise_mode_name(QuantNoiseMode mode);
/// The mode called `name` (inverse of `quant_noise_mode_name`; "proxy" is
/// accepted for "proxy_drop"); throws `diffq::Error` listing the names.
QuantNoiseMode parse_quant_noise_mode(const std::string& name);
/// "sum" or "mean".
const char* centroid_reduction_name(CentroidReduction reduction);

/// Options of `QuantNoiseQuantizer`.
struct QuantNoiseOptions {
  /// Which noise / quantizer.
  TORCH_ARG(QuantNoiseMode, mode) = QuantNoiseMode::kIPQ;
  /// Probability of selecting a block (element for the scalar modes) on each
  /// training forward: 0..1 for scalar modes (1 = plain STE QAT), 0..<1 for
  /// the proxy drop (p = 0: no noise).
  TORCH_ARG(double, p) = 0.1;
  /// d: noise-block and PQ-subvector length of 2-D and 1×1-conv weights.
  TORCH_ARG(int64_t, block_size) = 8;
  /// PQ subvector length of k×k convolutions; 0 = kh·kw (one kernel).
  TORCH_ARG(int64_t, conv_block_size) = 0;
  /// K: centroids per layer (capped by the layer's number of subvectors).
  TORCH_ARG(int64_t, num_centroids) = 256;
  /// k-means EM iterations.
  TORCH_ARG(int64_t, kmeans_iterations) = 20;
  /// Scalar modes: the training ranges are recomputed every this many steps.
  TORCH_ARG(int64_t, refresh_every) = 1000;
  /// Scalar modes: per-channel (dim 0) symmetric ranges [-max|w_c|, max|w_c|]
  /// instead of the per-tensor affine range [min, max].
  TORCH_ARG(bool, per_channel) = false;
  /// Reduction of the centroid gradient (iPQ).
  TORCH_ARG(CentroidReduction, centroid_reduction) = CentroidReduction::kSum;
  /// Seed of the noise masks (drawn from (seed, step, tensor), like DiffQ's
  /// noise) and of the k-means initialisations.
  TORCH_ARG(uint64_t, seed) = 0x5eed;
  /// Which parameters are quantized.
  TORCH_ARG(DiscoveryOptions, discovery) = {};
};

/// Block layout of a weight shape (spec section 2).
struct BlockLayout {
  /// False when the shape has no block layout (then `reason` says why).
  bool supported = false;
  /// Contiguous entries of one noise block.
  int64_t noise_block = 0;
  /// Contiguous entries of one PQ subvector.
  int64_t pq_block = 0;
  /// Why the shape is not supported.
  std::string reason;
};

/// The layout of `shape` for noise-block length `block_size` (d) and k×k
/// conv PQ subvector length `conv_block_size` (0 = kernel size).
BlockLayout block_layout(const std::vector<int64_t>& shape, int64_t block_size,
                         int64_t conv_block_size = 0);

/// Quant-Noise quantizer (see the file comment).
///
/// Sizes (bits): PQ layer `n_sub·log2(K) + 16·K·d` (indices + fp16
/// centroids); scalar per-tensor `N·numel + 64` (stored exactly as
/// kUniform); scalar per-channel `N·numel + 64·channels` (stored exactly as
/// kPerChannelUniform: a float32 min and max per channel; channels =
/// `size(0)` for 2+ dims, else one, stored as kUniform on [-a, a]); layers
/// still float 32 (16 with `discovery.float16`) bits per entry; plus the
/// float leftovers. `get_quantized_state().true_mib()` equals
/// `true_model_size()`.
class QuantNoiseQuantizer : public Quantizer {
 public:
  /// Wraps `model`.
  explicit QuantNoiseQuantizer(const ModelRef& model, QuantNoiseOptions options = {});
  ~QuantNoiseQuantizer() override = default;

  /// The (constant) size in MiB, as a tensor.
  torch::Tensor model_size() const override;
  /// Size in MiB.
  double true_model_size() const override;
  /// The options in use.
  const QuantNoiseOptions& options() const { return options_; }
  /// Changes p for the next training steps (e.g. p = 0 to stop the noise).
  void set_p(double p);

  // ---------------------------------------------------------------- iPQ
  /// Quantizes (k-means) the float layers whose full or bare name matches
  /// one of the fnmatch `patterns`; layers already quantized are skipped.
  /// Their centroids become trainable (`parameters()`), their assignments
  /// are frozen, their latent weight receives a zero gradient from then on.
  /// `num_centroids` overrides the option for this stage (0 = option).
  /// Returns the new centroid tensors (to add to an optimizer). Throws
  /// outside kIPQ mode, during a step or scope, or when no layer matches.
  std::vector<torch::Tensor> quantize_stage(const std::vector<std::string>& patterns,
                                            int64_t num_centroids = 0);
  /// Same, by index in `quantized_names()`.
  std::vector<torch::Tensor> quantize_layers(const std::vector<size_t>& indices,
                                             int64_t num_centroids = 0);
  /// Splits the quantized layers, in model order, into `num_stages`
  /// contiguous groups (by depth) with as equal layer counts as possible;
  /// each group is a list of exact names usable as `quantize_stage` patterns.
  std::vector<std::vector<std::string>> stages_by_depth(int64_t num_stages) const;
  /// True when the layer `name` has been product-quantized.
  bool is_product_quantized(const std::string& name) const;
  /// Names of the layers not product-quantized yet (kIPQ mode).
  std::vector<std::string> pending_names() const;
  /// k-means objective history of a quantized layer (empty otherwise).
  std::vector<double> kmeans_objective(const std::string& name) const;

 protected:
  torch::Tensor training_data(detail::Slot& slot) override;
  torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) override;
  void on_unused(detail::Slot& slot) override;
  torch::Tensor quantized_data(const detail::Slot& slot) const override;
  TensorRecord quantized_record(const detail::Slot& slot) const override;
  std::map<std::string, std::string> option_map() const override;

 private:
  struct Layer {
    BlockLayout layout;
    // Scalar modes: training ranges and when they were computed.
    float min = 0.f, max = 0.f;
    torch::Tensor channel_max;  // per-channel max|w| (float32 [C, 1])
    int64_t range_step = -1;
    torch::Tensor pass;         // gradient mask of this step (undefined = all pass)
    // iPQ.
    bool pq = false;
    torch::Tensor assignments;  // int64 [n_sub]
    torch::Tensor counts;       // assignments per centroid (for kMean), [K, 1]
    std::vector<double> objective;
  };
  bool scalar() const;
  int bits() const;
  size_t index_of(const detail::Slot& slot) const;
  void relocate_unsupported();
  void check_idle(const char* what) const;
  /// Fake-quantized float32 values of `w32` with the given ranges (and the
  /// in-range mask if `inside` is not null, the float levels, viewed as
  /// [channels or 1, -1], if `levels_out` is not null).
  torch::Tensor fake_quantize(const torch::Tensor& w32, const Layer& layer, bool fresh,
                              torch::Tensor* inside, torch::Tensor* levels_out = nullptr) const;
  void refresh_ranges(Layer& layer, const torch::Tensor& w32) const;
  torch::Tensor decoded(const detail::Slot& slot, bool half) const;
  /// This step's Bernoulli(p) draws for `slot` (n of them), on its device.
  torch::Tensor bernoulli(int64_t n, const detail::Slot& slot);

  QuantNoiseOptions options_;
  std::vector<Layer> layers_;
};

}  // namespace diffq
