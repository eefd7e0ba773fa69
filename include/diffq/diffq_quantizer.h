#pragma once
/// \file diffq_quantizer.h
/// DiffQ: differentiable quantization with pseudo quantization noise and a
/// learned bit-width per group of weights (Défossez et al., TMLR 2022).

#include <map>
#include <string>

#include "diffq/quantizer.h"

namespace diffq {

/// The training noise's distribution.
enum class NoiseKind {
  /// ε ~ N(0, 1) / 2 (the default).
  kGaussian,
  /// ε ~ U[-1/2, 1/2].
  kUniform,
};

/// How the bits' logits are mapped to a bit-width.
enum class Parametrization {
  /// b = min_bits + σ(l) (max_bits - min_bits) (the default).
  kBits,
  /// The noise scale is interpolated in log space between 2^-max_bits and
  /// 2^-min_bits-ish bounds; b = log2(1 + 1/s).
  kNoise,
};

/// "gaussian" or "uniform".
const char* noise_kind_name(NoiseKind kind);
/// The noise kind called `name` (inverse of `noise_kind_name`); throws `diffq::Error`.
NoiseKind parse_noise_kind(const std::string& name);
/// "bits" or "noise".
const char* parametrization_name(Parametrization param);
/// The parametrisation called `name` (inverse of `parametrization_name`); throws `diffq::Error`.
Parametrization parse_parametrization(const std::string& name);

/// Options of `DiffQuantizer` (spec section 3).
struct DiffQOptions {
  /// Elements per group sharing one bit-width; 0 = one per tensor. Must
  /// divide the element count of every quantized tensor. The default, 16,
  /// adds 1/16 of the weights' memory for the logits (the reference's
  /// default of 1 doubles the model's memory); pass 1 for the reference's
  /// behaviour.
  TORCH_ARG(int64_t, group_size) = 16;
  /// Lowest bit-width the logits can reach.
  TORCH_ARG(double, min_bits) = 2;
  /// Highest bit-width the logits can reach.
  TORCH_ARG(double, max_bits) = 15;
  /// Bit-width at initialisation (strictly between min and max).
  TORCH_ARG(double, init_bits) = 8;
  /// Added at true quantization and in the size, never in the noise.
  TORCH_ARG(double, extra_bits) = 0;
  /// Bit-width parametrisation.
  TORCH_ARG(Parametrization, param) = Parametrization::kBits;
  /// Noise distribution.
  TORCH_ARG(NoiseKind, noise) = NoiseKind::kGaussian;
  /// Zero the bits' gradient of tensors that received no gradient in a step.
  TORCH_ARG(bool, check_unused) = true;
  /// Seed of the noise generator (a fresh draw on every forward).
  TORCH_ARG(uint64_t, seed) = 0x5eed;
  /// Which parameters are quantized.
  TORCH_ARG(DiscoveryOptions, discovery) = {};
};

/// DiffQ quantizer. See `Quantizer` for the training and evaluation API.
class DiffQuantizer : public Quantizer {
 public:
  /// Wraps `model`; creates one logit per group (on the parameter's device).
  explicit DiffQuantizer(const ModelRef& model, DiffQOptions options = {});
  /// Destroys the quantizer; the model keeps its float weights.
  ~DiffQuantizer() override = default;

  /// Differentiable size estimate in MiB (only g·Σb carries a gradient).
  torch::Tensor model_size() const override;
  /// Size in MiB with bits rounded and clamped to 1..15 (spec section 5).
  double true_model_size() const override;
  /// Mean bit-width over the quantized weights (rounded, with extra bits).
  double mean_bits() const;
  /// The current (fractional) bit-width of each group of `name`'s tensor.
  torch::Tensor bits(const std::string& name) const;
  /// The current fractional bit-widths of a slot's groups, differentiable.
  torch::Tensor bits_of(const detail::Slot& slot) const;
  /// The options in use.
  const DiffQOptions& options() const { return options_; }
  /// Mean of the fractional bit-widths (extra bits included) over the
  /// quantized weights: the smooth counterpart of `mean_bits()`.
  double soft_mean_bits() const;

  /// Freezes the bits: from the next training step on, the model trains on
  /// its TRUE quantized weights (each group at its rounded bits) with a
  /// straight-through gradient to the latent weights, the logits get no
  /// gradient and `model_size()` is a constant. Idempotent; there is no
  /// unfreezing (a new quantizer starts over).
  void freeze_bits();
  /// True once `freeze_bits()` was called.
  bool bits_frozen() const { return frozen_; }
  /// How a target is measured by `shift_bits_to`.
  enum class Measure {
    /// `true_model_size()`, MiB.
    kTrueSizeMiB,
    /// `mean_bits()`.
    kMeanBits,
  };
  /// Moves the bits onto `target` from below: adds one constant to every
  /// logit and caps the bits at a whole number, choosing, over the caps,
  /// the largest constant (within 1e-6) for which the measure is at most
  /// `target` and, of those, the cap that comes closest. The learned
  /// ranking of the groups is kept (ties at the cap aside); the cap matters
  /// because the size jumps when the widest group gains a bit (every
  /// group's stored bit-width widens). Returns the constant. Throws
  /// `diffq::Error` when even every group at `min_bits` exceeds the target.
  double shift_bits_to(double target, Measure measure);
  /// The measure with every group at `min_bits`: the smallest target
  /// `shift_bits_to` accepts. The logits are left as they were.
  double smallest(Measure measure);

 protected:
  torch::Tensor training_data(detail::Slot& slot) override;
  torch::Tensor backward(detail::Slot& slot, const torch::Tensor& grad) override;
  void on_unused(detail::Slot& slot) override;
  torch::Tensor quantized_data(const detail::Slot& slot) const override;
  TensorRecord quantized_record(const detail::Slot& slot) const override;
  std::map<std::string, std::string> option_map() const override;

 private:
  /// Groups of a slot (one when group_size is 0).
  int64_t groups_of(const detail::Slot& slot) const;
  /// Elements per group of a slot (all of them when group_size is 0).
  int64_t extent_of(const detail::Slot& slot) const;
  /// Per group: the noise scale s (1/(2^b - 1) in the bits
  /// parametrisation) and d ln s / d l, from the logits (no gradient).
  struct GroupFactors {
    torch::Tensor scale, log_slope;
  };
  GroupFactors group_factors(const torch::Tensor& logits) const;
  /// Rounded bits per group, extra bits included, clamped to 1..15.
  torch::Tensor true_bits(const detail::Slot& slot) const;
  size_t index_of(const detail::Slot& slot) const;
  /// True when the fused CPU noise kernels handle this tensor.
  bool fused(const torch::Tensor& w) const;
  /// True when the fused group kernels handle this slot's logits (bits
  /// parametrisation, float32 on the CPU).
  bool fused_groups(const detail::Slot& slot) const;
  /// When a value derived from a tensor was computed: the step, the data
  /// it was read from and the version of the tensor that guards that data.
  /// Equal stamps: the value is still that of the data.
  struct Stamp {
    int64_t step = -1;
    const void* data = nullptr;
    uint32_t version = 0;
    bool operator==(const Stamp& o) const { return step == o.step && data == o.data && version == o.version; }
  };
  /// The stamp, now, of `data` guarded by `versioned`'s version counter.
  Stamp stamp(const void* data, const torch::Tensor& versioned) const {
    return {steps(), data, versioned._version()};
  }
  /// Per slot: the current step's noise key and the latent weight's range.
  struct NoiseState {
    uint64_t key = 0;
    double low = 0, high = 0, range = 0;
    /// This step's d ln s / d l per group, in the logits' dtype and device
    /// (computed once in the forward, read by the backward).
    torch::Tensor log_slope;
    /// Σ_g b_g and max_g b_g of the logits, from the pass that computed this
    /// step's noise scales (float logits on the CPU), for `model_size()`:
    /// valid while `bits_stamp` is the logits' stamp.
    double bits_total = 0;
    float bits_top = 0;
    Stamp bits_stamp;
  };
  /// Σ_g b_g and max_g b_g of a slot's float CPU logits: this step's cached
  /// values when still valid, else one pass over them.
  void bits_total(const detail::Slot& slot, double* total, float* top) const;
  /// True quantized values of `w` (the slot's latent or current data).
  torch::Tensor quantize(const detail::Slot& slot, const torch::Tensor& w) const;
  /// The range of the next tensor of a step, taken during the noise pass
  /// before it: valid for `slot` while `stamp` is its float data's stamp
  /// (guarded by its parameter's version).
  struct NextRange {
    const detail::Slot* slot = nullptr;
    Stamp stamp;
    float low = 0, high = 0;
  };
  DiffQOptions options_;
  std::vector<NoiseState> noise_;
  NextRange next_range_;
  bool frozen_ = false;
};

}  // namespace diffq
