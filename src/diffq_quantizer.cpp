// DiffQ: pseudo quantization noise and learned per-group bit-widths.
#include "diffq/diffq_quantizer.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "diffq/error.h"
#include "noise/noise_kernels.h"
#include "option_text.h"
#include "tensor_convert.h"

namespace diffq {

namespace {

bool is_integer(double x) { return std::isfinite(x) && std::floor(x) == x; }

double logit(double p) { return std::log(p / (1.0 - p)); }

// The logit at which a group has `bits` bits (strictly inside the range).
double logit_of_bits(const DiffQOptions& o, double bits) {
  double p;
  if (o.param() == Parametrization::kBits) {
    p = (bits - o.min_bits()) / (o.max_bits() - o.min_bits());
  } else {
    const double ln_min = -std::log(std::pow(2.0, o.max_bits()) - 1.0);
    const double ln_max = -std::log(std::pow(2.0, o.min_bits()) - 1.0);
    const double ln_s = -std::log(std::pow(2.0, bits) - 1.0);
    p = (ln_s - ln_max) / (ln_min - ln_max);
  }
  return logit(std::clamp(p, 1e-12, 1 - 1e-12));
}

}  // namespace

DiffQuantizer::DiffQuantizer(const ModelRef& model, DiffQOptions options)
    : Quantizer(model, options.discovery(), "diffq"), options_(std::move(options)) {
  const auto& o = options_;
  DIFFQ_CHECK(is_integer(o.min_bits()) && is_integer(o.max_bits()),
              "min_bits and max_bits must be whole numbers, got ", o.min_bits(), " and ",
              o.max_bits());
  DIFFQ_CHECK(o.min_bits() >= 1 && o.max_bits() <= 15, "bits must lie in 1..15, got min_bits ",
              o.min_bits(), " and max_bits ", o.max_bits());
  DIFFQ_CHECK(o.min_bits() < o.init_bits() && o.init_bits() < o.max_bits(),
              "DiffQ needs min_bits < init_bits < max_bits, got ", o.min_bits(), " < ",
              o.init_bits(), " < ", o.max_bits());
  DIFFQ_CHECK(std::isfinite(o.extra_bits()) && o.extra_bits() >= 0,
              "extra_bits must be a non-negative number, got ", o.extra_bits());
  DIFFQ_CHECK(o.group_size() >= 0, "group_size must be 0 (one group per tensor) or positive, got ",
              o.group_size());
  const double init = logit_of_bits(o, o.init_bits());
  for (auto& slot : slots_) {
    const int64_t n = slot.tensor.numel();
    DIFFQ_CHECK(o.group_size() == 0 || n % o.group_size() == 0, "group_size ", o.group_size(),
                " does not divide the ", n, " elements of parameter '", slot.name,
                "'; choose a divisor, 0 (one group per tensor), or exclude the parameter");
    const auto dtype =
        slot.tensor.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    slot.own = torch::full({groups_of(slot)}, init,
                           torch::TensorOptions().dtype(dtype).device(slot.tensor.device()))
                   .requires_grad_(true);
  }
  // Undetected ties share the first occurrence's logits? No: each has its
  // own (the reference's behaviour); the occurrences drive the noise in turn.
  noise_.resize(slots_.size());
  install_hooks();
}

int64_t DiffQuantizer::groups_of(const detail::Slot& slot) const {
  return slot.tensor.numel() / extent_of(slot);
}

int64_t DiffQuantizer::extent_of(const detail::Slot& slot) const {
  return options_.group_size() == 0 ? slot.tensor.numel() : options_.group_size();
}

torch::Tensor DiffQuantizer::bits_of(const detail::Slot& slot) const {
  const auto& o = options_;
  auto sigma = torch::sigmoid(slot.own);
  if (o.param() == Parametrization::kBits) {
    return o.min_bits() + sigma * (o.max_bits() - o.min_bits());
  }
  const double ln_min = -std::log(std::pow(2.0, o.max_bits()) - 1.0);
  const double ln_max = -std::log(std::pow(2.0, o.min_bits()) - 1.0);
  auto scale = torch::exp(sigma * ln_min + (1 - sigma) * ln_max);
  return torch::log2(1 + 1 / scale);
}

torch::Tensor DiffQuantizer::bits(const std::string& name) const {
  for (const auto& slot : slots_) {
    if (slot.name == name) return bits_of(slot).detach();
    for (const auto& alias : slot.aliases) {
      if (alias == name) return bits_of(slot).detach();
    }
  }
  throw Error(detail::concat("no quantized parameter named '", name, "'"));
}

DiffQuantizer::GroupFactors DiffQuantizer::group_factors(const torch::Tensor& logits) const {
  const auto& o = options_;
  auto sigma = torch::sigmoid(logits);
  GroupFactors f;
  torch::Tensor dlog_ds;  // d ln s / d sigma
  if (o.param() == Parametrization::kBits) {
    // s = 1/(2^b - 1), b = min + σ (max - min): d ln s / d b = -(1 + s) ln 2.
    const double ln2 = std::log(2.0);  // 2^b as exp(b ln 2): torch's exp is vectorised, its exp2 is not
    f.scale = sigma.mul((o.max_bits() - o.min_bits()) * ln2).add_(o.min_bits() * ln2).exp_().sub_(1).reciprocal_();
    dlog_ds = f.scale.add(1).mul_(-ln2 * (o.max_bits() - o.min_bits()));
  } else {
    const double ln_min = -std::log(std::pow(2.0, o.max_bits()) - 1.0);
    const double ln_max = -std::log(std::pow(2.0, o.min_bits()) - 1.0);
    f.scale = sigma.mul(ln_min - ln_max).add_(ln_max).exp_();
    dlog_ds = torch::full_like(sigma, ln_min - ln_max);
  }
  // dσ/dl = σ (1 - σ).
  f.log_slope = dlog_ds.mul_(sigma).mul_(sigma.neg().add_(1));
  return f;
}

namespace {

noise::Kind kind_of(NoiseKind kind) {
  return kind == NoiseKind::kGaussian ? noise::Kind::kGaussian : noise::Kind::kUniform;
}

}  // namespace

size_t DiffQuantizer::index_of(const detail::Slot& slot) const {
  return static_cast<size_t>(&slot - slots_.data());
}

bool DiffQuantizer::fused_groups(const detail::Slot& slot) const {
  return options_.param() == Parametrization::kBits && slot.own.device().is_cpu() &&
         slot.own.scalar_type() == torch::kFloat32;
}

namespace {

// The size in bits of every quantized tensor, one autograd node for all
// (float logits on the CPU, bits parametrisation): Σ_t [g_t (Σ_g b_g + e n_t)
// + 72 + w_t n_t], with w_t the bits of the stored bit-widths, added in
// tensor order in double (the operations, in the order, of one scalar
// tensor expression per tensor). The backward: d/d l_g = G g_t span σ(1−σ).
struct SizeTerm {
  double group_extent;  // g_t
  double extra;         // e n_t
  double numel;         // n_t
  double total;         // Σ_g b_g
  float top;            // max_g b_g
};

struct SizeBits : torch::autograd::Function<SizeBits> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::TensorList& logits,
                               const std::vector<SizeTerm>* terms, double min_bits, double span, double extra_bits) {
    double total = 0;
    std::vector<double> extents;
    for (size_t t = 0; t < terms->size(); ++t) {
      const auto& term = (*terms)[t];
      const double max_b = std::round(term.top + extra_bits);
      const double bits_bits = std::ceil(std::log2(1.0 + std::max(0.0, max_b - min_bits)));
      const double tensor_bits = term.group_extent * (term.total + term.extra) + 64.0 + 8.0 + bits_bits * term.numel;
      total = t == 0 ? tensor_bits : total + tensor_bits;
      extents.push_back(term.group_extent);
    }
    ctx->save_for_backward(logits.vec());
    ctx->saved_data["extents"] = extents;
    ctx->saved_data["span"] = span;
    return torch::scalar_tensor(total, torch::kFloat64);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto extents = ctx->saved_data["extents"].toDoubleVector();
    const double span = ctx->saved_data["span"].toDouble();
    const double upstream = grads[0].item<double>();
    torch::autograd::variable_list out;
    for (size_t t = 0; t < saved.size(); ++t) {
      auto l = saved[t].contiguous();
      const double coefficient = upstream * extents[t] * span;
      auto g = torch::empty_like(l, torch::MemoryFormat::Contiguous);
      noise::bits_sum_grad(l.data_ptr<float>(), l.numel(), static_cast<float>(coefficient), g.data_ptr<float>());
      out.push_back(g);
    }
    out.resize(saved.size() + 4);  // the four arguments after the logits
    return out;
  }
};

}  // namespace

bool DiffQuantizer::fused(const torch::Tensor& w) const {
  return w.device().is_cpu() &&
         (w.scalar_type() == torch::kFloat32 || w.scalar_type() == torch::kFloat64);
}

torch::Tensor DiffQuantizer::training_data(detail::Slot& slot) {
  if (frozen_) return quantize(slot, slot.latent).contiguous();
  const size_t index = index_of(slot);
  auto& state = noise_[index];
  const auto w = slot.latent.contiguous();
  if (fused(w) && w.scalar_type() == torch::kFloat32 && w.numel() > 0) {
    float low, high;
    if (next_range_.slot == &slot && next_range_.stamp == stamp(w.data_ptr(), slot.tensor)) {
      low = next_range_.low;  // taken during the previous tensor's noise pass
      high = next_range_.high;
    } else {
      noise::range(w.data_ptr<float>(), w.numel(), &low, &high);
    }
    next_range_.slot = nullptr;
    state.low = low;
    state.high = high;
  } else {
    auto minmax = torch::aminmax(w);
    state.low = std::get<0>(minmax).item<double>();
    state.high = std::get<1>(minmax).item<double>();
  }
  DIFFQ_CHECK(std::isfinite(state.low) && std::isfinite(state.high), "parameter '", slot.name,
              "' contains NaN or infinite values; it cannot be quantized");
  // R = max - min in the weight's dtype (as torch would subtract them).
  const auto range = torch::scalar_tensor(state.high, w.options()) - torch::scalar_tensor(state.low, w.options());
  state.range = range.item<double>();
  const int64_t groups = groups_of(slot);
  // Δ_g = R · s_g, in the weight's dtype; the backward's d ln s / d l kept.
  torch::Tensor scale;
  if (fused_groups(slot) && w.scalar_type() == torch::kFloat32) {
    const auto& o = options_;
    const auto logits = slot.own.detach().contiguous();
    scale = torch::empty({groups}, torch::kFloat32);
    state.log_slope = torch::empty({groups}, torch::kFloat32);
    const double ln2 = std::log(2.0);
    noise::group_factors(logits.data_ptr<float>(), groups, static_cast<float>((o.max_bits() - o.min_bits()) * ln2),
                         static_cast<float>(o.min_bits() * ln2), static_cast<float>(state.range), scale.data_ptr<float>(),
                         state.log_slope.data_ptr<float>(), static_cast<float>(o.min_bits()),
                         static_cast<float>(o.max_bits() - o.min_bits()), &state.bits_total, &state.bits_top);
    state.bits_stamp = stamp(slot.own.data_ptr(), slot.own);
  } else {
    auto factors = group_factors(slot.own.detach());
    state.log_slope = factors.log_slope;
    scale = factors.scale.to(w.scalar_type()).mul_(range).contiguous();
  }
  if (fused(w)) {
    state.key = noise::mix_key(options_.seed(), static_cast<uint64_t>(steps()), index);
    auto out = new_buffer(w);
    const int64_t gs = options_.group_size();  // 0: one group (the kernels' convention)
    // The next tensor's range along this pass, when its kernels will want it.
    const detail::Slot* next = next_training_slot();
    torch::Tensor next_w;
    if (next != nullptr) next_w = next->tensor.variable_data();
    const bool along = next_w.defined() && next_w.device().is_cpu() && next_w.scalar_type() == torch::kFloat32 &&
                       next_w.is_contiguous() && next_w.numel() > 0;
    if (along) {
      float next_low, next_high;
      if (w.scalar_type() == torch::kFloat32) {
        noise::add_noise_and_range<float>(w.data_ptr<float>(), out.data_ptr<float>(), w.numel(), gs,
                                          scale.data_ptr<float>(), state.key, kind_of(options_.noise()),
                                          next_w.data_ptr<float>(), next_w.numel(), &next_low, &next_high);
      } else {
        noise::add_noise_and_range<double>(w.data_ptr<double>(), out.data_ptr<double>(), w.numel(), gs,
                                           scale.data_ptr<double>(), state.key, kind_of(options_.noise()),
                                           next_w.data_ptr<float>(), next_w.numel(), &next_low, &next_high);
      }
      next_range_ = {next, stamp(next_w.data_ptr(), next->tensor), next_low, next_high};
    } else if (w.scalar_type() == torch::kFloat32) {
      noise::add_noise<float>(w.data_ptr<float>(), out.data_ptr<float>(), w.numel(), gs,
                              scale.data_ptr<float>(), state.key, kind_of(options_.noise()));
    } else {
      noise::add_noise<double>(w.data_ptr<double>(), out.data_ptr<double>(), w.numel(), gs,
                               scale.data_ptr<double>(), state.key, kind_of(options_.noise()));
    }
    return out;
  }
  // Other devices and dtypes: torch's generator.
  auto options = w.options();
  torch::Tensor eps =
      options_.noise() == NoiseKind::kGaussian
          ? torch::randn({groups, w.numel() / groups}, options).mul_(0.5)
          : torch::empty({groups, w.numel() / groups}, options).uniform_(-0.5, 0.5);
  eps.mul_(scale.view({groups, 1}));
  return eps.view(w.sizes()).add_(w);
}

namespace {

// The fused backward (CPU, float32 or float64, one dtype throughout).
template <typename T>
void fused_backward(const torch::Tensor& g, const torch::Tensor& noisy, const torch::Tensor& w,
                    int64_t group_size, double low, double high, torch::Tensor& sums,
                    torch::Tensor& full, std::vector<int64_t>& at_low, std::vector<int64_t>& at_high) {
  noise::noise_backward<T>(g.data_ptr<T>(), noisy.data_ptr<T>(), w.data_ptr<T>(), w.numel(), group_size,
                           static_cast<T>(low), static_cast<T>(high), sums.data_ptr<double>(),
                           full.data_ptr<T>(), at_low, at_high);
}

// g[i] += up at the maximum's indices, g[i] -= down at the minimum's: the
// amounts rounded to the gradient's dtype first, as torch's `+=` rounds a
// double scalar.
template <typename T>
void add_at(T* g, const std::vector<int64_t>& at_high, double up, const std::vector<int64_t>& at_low, double down) {
  for (int64_t i : at_high) g[i] = g[i] + static_cast<T>(up);
  for (int64_t i : at_low) g[i] = g[i] - static_cast<T>(down);
}

}  // namespace

torch::Tensor DiffQuantizer::backward(detail::Slot& slot, const torch::Tensor& grad) {
  if (frozen_) return grad;  // straight through to the latent weights; the logits learn no more
  const auto& state = noise_[index_of(slot)];
  const auto w = slot.latent.contiguous();
  const int64_t groups = groups_of(slot);
  auto g = grad.contiguous();
  // The noise of this step is what the forward added: installed - latent
  // (= R s_g ε_i). per_group[g] = Σ_i grad_i · noise_i over the group.
  const auto& noisy = slot.installed;
  auto full = gradient_buffer(slot, g);  // may be `noisy` itself: the fused pass reads it first
  torch::Tensor per_group;
  std::vector<int64_t> at_low, at_high;
  const bool one_dtype = g.scalar_type() == w.scalar_type() && noisy.scalar_type() == w.scalar_type() &&
                         g.device() == w.device() && noisy.device() == w.device() &&
                         noisy.is_contiguous() && full.is_contiguous();
  if (fused(w) && one_dtype) {
    per_group = torch::empty({groups}, torch::kFloat64);
    const int64_t gs = options_.group_size();  // 0: one group (the kernels' convention)
    if (w.scalar_type() == torch::kFloat32) {
      fused_backward<float>(g, noisy, w, gs, state.low, state.high, per_group, full, at_low, at_high);
    } else {
      fused_backward<double>(g, noisy, w, gs, state.low, state.high, per_group, full, at_low, at_high);
    }
  } else {
    per_group = (g * (noisy - w)).reshape({groups, -1}).sum(1).to(torch::kCPU, torch::kFloat64);
    full.copy_(g);
    auto flat = w.reshape(-1);
    auto lo = (flat == state.low).nonzero().view(-1).to(torch::kCPU);
    auto hi = (flat == state.high).nonzero().view(-1).to(torch::kCPU);
    at_low.assign(lo.data_ptr<int64_t>(), lo.data_ptr<int64_t>() + lo.numel());
    at_high.assign(hi.data_ptr<int64_t>(), hi.data_ptr<int64_t>() + hi.numel());
  }
  // Logits: d noisy_i / d l_g = noise_i · d ln s_g / d l_g.
  auto& own_grad = slot.own.mutable_grad();
  const auto& slope = state.log_slope;
  const bool one_pass = slope.device().is_cpu() && slope.scalar_type() == torch::kFloat32 && slope.is_contiguous() &&
                        slope.numel() == groups && slot.own.numel() == groups &&
                        (!own_grad.defined() || (own_grad.device().is_cpu() && own_grad.is_contiguous() &&
                                                 own_grad.scalar_type() == torch::kFloat32));
  double group_total = 0;  // Σ_g per_group[g]
  if (one_pass) {
    const bool accumulate = own_grad.defined();
    if (!accumulate) own_grad = torch::empty_like(slot.own.detach(), torch::MemoryFormat::Contiguous);
    group_total = noise::logit_gradient(per_group.data_ptr<double>(), slope.data_ptr<float>(), groups,
                                        own_grad.data_ptr<float>(), accumulate);
  } else {
    auto logit_grad = per_group.to(slope.device(), slope.scalar_type()).mul(slope);
    if (own_grad.defined()) {
      own_grad.add_(logit_grad);
    } else {
      own_grad = logit_grad;
    }
    group_total = per_group.sum().item<double>();
  }
  // Weights: identity, plus the range path (max and min are not detached;
  // ties share the gradient evenly, like torch's max() and min()). The
  // noise is R s_g ε_i, so d noisy_i / d R = noise_i / R.
  if (state.range > 0) {
    const double d_range = group_total / state.range;
    const double up = d_range / static_cast<double>(at_high.size()), down = d_range / static_cast<double>(at_low.size());
    const bool raw = full.device().is_cpu() && full.is_contiguous();
    if (raw && full.scalar_type() == torch::kFloat32) {
      add_at(full.data_ptr<float>(), at_high, up, at_low, down);
    } else if (raw && full.scalar_type() == torch::kFloat64) {
      add_at(full.data_ptr<double>(), at_high, up, at_low, down);
    } else {
      auto flat_g = full.view(-1);
      for (int64_t i : at_high) flat_g[i] += up;
      for (int64_t i : at_low) flat_g[i] -= down;
    }
  }
  return full;
}

void DiffQuantizer::on_unused(detail::Slot& slot) {
  if (frozen_) return;
  if (options_.check_unused() && slot.own.grad().defined()) slot.own.mutable_grad().zero_();
}

torch::Tensor DiffQuantizer::true_bits(const detail::Slot& slot) const {
  return torch::clamp(torch::round(bits_of(slot).detach() + options_.extra_bits()), 1, 15);
}

torch::Tensor DiffQuantizer::quantized_data(const detail::Slot& slot) const {
  return quantize(slot, slot.tensor.detach());
}

torch::Tensor DiffQuantizer::quantize(const detail::Slot& slot, const torch::Tensor& w) const {
  auto w32 = w.to(torch::kFloat32);
  const auto range = finite_range(w32, slot.name);
  auto tb = true_bits(slot).to(torch::kFloat32);
  auto denom = (torch::pow(2.0, tb) - 1).view({-1, 1});
  auto levels = uniform_levels(w32, denom, range.first, range.second);
  auto values = uniform_values(levels, denom, range.first, range.second);
  return values.view(w.sizes()).to(w.scalar_type());
}

void DiffQuantizer::freeze_bits() {
  frozen_ = true;
  for (auto& slot : slots_) slot.own.mutable_grad() = torch::Tensor();
}

double DiffQuantizer::soft_mean_bits() const {
  double weighted = 0, count = 0;
  for (const auto& slot : slots_) {
    const double n = static_cast<double>(slot.tensor.numel());
    weighted += (bits_of(slot).detach().to(torch::kFloat64).mean().item<double>() + options_.extra_bits()) * n;
    count += n;
  }
  return count > 0 ? weighted / count : 0.0;
}

double DiffQuantizer::smallest(Measure measure) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> start;
  for (auto& slot : slots_) {
    start.push_back(slot.own.detach().clone());
    slot.own.detach().fill_(-40.0);  // every group at min_bits (the sigmoid saturates)
  }
  const double m = measure == Measure::kMeanBits ? mean_bits() : true_model_size();
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].own.detach().copy_(start[i]);
  return m;
}

double DiffQuantizer::shift_bits_to(double target, Measure measure) {
  DIFFQ_CHECK(std::isfinite(target) && target > 0, "the target must be a positive number, not ", target);
  torch::NoGradGuard no_grad;
  const auto& o = options_;
  std::vector<torch::Tensor> start;
  for (const auto& slot : slots_) start.push_back(slot.own.detach().clone());
  // The logit below which a group's true bits are at most `cap`.
  const auto cap_logit = [&](double cap) {
    return logit_of_bits(o, std::min(cap + 0.49 - o.extra_bits(), o.max_bits()));
  };
  const auto measure_at = [&](double shift, double cap) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].own.detach().copy_((start[i] + shift).clamp_max(cap_logit(cap)));
    }
    return measure == Measure::kMeanBits ? mean_bits() : true_model_size();
  };
  const double floor = smallest(measure);
  DIFFQ_CHECK(floor <= target, "the target ", target, measure == Measure::kMeanBits ? " bits" : " MiB",
              " is below what every group at min_bits gives (", floor, "); lower --min-bits or raise the target");
  // The size jumps where the widest group gains a bit (every group's stored
  // bit-width widens): for each cap on the bits, the largest shift within
  // the target; the best of them.
  double best = -1, best_shift = -40.0, best_cap = o.max_bits();
  for (double cap = o.min_bits(); cap <= o.max_bits() + o.extra_bits(); cap += 1) {
    double low = -40.0, high = 40.0;
    if (measure_at(low, cap) > target) continue;
    if (measure_at(high, cap) <= target) {
      low = high;
    } else {
      while (high - low > 1e-6) {
        const double mid = 0.5 * (low + high);
        (measure_at(mid, cap) <= target ? low : high) = mid;
      }
    }
    const double m = measure_at(low, cap);
    if (m > best) best = m, best_shift = low, best_cap = cap;
  }
  measure_at(best_shift, best_cap);
  return best_shift;
}

TensorRecord DiffQuantizer::quantized_record(const detail::Slot& slot) const {
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  const auto range = finite_range(w32, slot.name);
  auto tb = true_bits(slot).to(torch::kFloat32);
  auto denom = (torch::pow(2.0, tb) - 1).view({-1, 1});
  TensorRecord record;
  record.encoding = Encoding::kDiffQGroups;
  record.group_size = options_.group_size();
  record.min_bits = static_cast<int>(options_.min_bits());
  record.min = range.first;
  record.max = range.second;
  auto gb = tb.to(torch::kCPU, torch::kUInt8).contiguous();
  record.group_bits.assign(gb.data_ptr<uint8_t>(), gb.data_ptr<uint8_t>() + gb.numel());
  record.levels = levels_to_vector(uniform_levels(w32, denom, range.first, range.second));
  return record;
}

void DiffQuantizer::bits_total(const detail::Slot& slot, double* total, float* top) const {
  const auto& state = noise_[index_of(slot)];
  if (in_training_step() && state.bits_stamp == stamp(slot.own.data_ptr(), slot.own)) {
    *total = state.bits_total;
    *top = state.bits_top;
    return;
  }
  const auto l = slot.own.detach().contiguous();
  noise::bits_sum(l.data_ptr<float>(), l.numel(), static_cast<float>(options_.min_bits()),
                  static_cast<float>(options_.max_bits() - options_.min_bits()), total, top);
}

torch::Tensor DiffQuantizer::model_size() const {
  if (frozen_) return torch::full({}, true_model_size(), torch::kFloat64);
  const auto& o = options_;
  const bool one_node = !slots_.empty() && std::all_of(slots_.begin(), slots_.end(), [&](const detail::Slot& slot) {
    return fused_groups(slot);
  });
  torch::Tensor total = torch::zeros({}, torch::kFloat64);
  if (one_node) {
    std::vector<SizeTerm> terms;
    std::vector<torch::Tensor> logits;
    for (const auto& slot : slots_) {
      SizeTerm term{};
      term.group_extent = static_cast<double>(extent_of(slot));
      term.numel = static_cast<double>(slot.own.numel());
      term.extra = o.extra_bits() * term.numel;
      bits_total(slot, &term.total, &term.top);
      terms.push_back(term);
      logits.push_back(slot.own);
    }
    total = SizeBits::apply(torch::TensorList(logits), &terms, o.min_bits(), o.max_bits() - o.min_bits(),
                            o.extra_bits());
  } else {
    bool first = true;
    for (const auto& slot : slots_) {
      const double g_eff = static_cast<double>(extent_of(slot));
      auto b = bits_of(slot).to(torch::kFloat64) + o.extra_bits();
      const double max_b = std::round(b.max().item<double>());
      const double bits_bits = std::ceil(std::log2(1.0 + std::max(0.0, max_b - o.min_bits())));
      auto slot_bits = g_eff * b.sum() + 64.0 + 8.0 + bits_bits * static_cast<double>(slot.own.numel());
      total = first ? slot_bits.to(torch::kCPU) : total + slot_bits.to(torch::kCPU);
      first = false;
    }
  }
  return (total + leftover_bits()) / (8.0 * 1048576.0);
}

double DiffQuantizer::true_model_size() const {
  const auto& o = options_;
  double bits = leftover_bits();
  for (const auto& slot : slots_) {
    const double g_eff = static_cast<double>(extent_of(slot));
    auto tb = true_bits(slot).to(torch::kFloat64);
    const double max_b = tb.max().item<double>();
    const double bits_bits = std::ceil(std::log2(1.0 + std::max(0.0, max_b - o.min_bits())));
    bits += g_eff * tb.sum().item<double>() + 72.0 + bits_bits * static_cast<double>(tb.numel());
  }
  return bits / (8.0 * 1048576.0);
}

double DiffQuantizer::mean_bits() const {
  double weighted = 0, count = 0;
  for (const auto& slot : slots_) {
    const double n = static_cast<double>(slot.tensor.numel());
    weighted += true_bits(slot).to(torch::kFloat64).mean().item<double>() * n;
    count += n;
  }
  return count > 0 ? weighted / count : 0.0;
}

std::map<std::string, std::string> DiffQuantizer::option_map() const {
  const auto& o = options_;
  std::map<std::string, std::string> options{{"group_size", std::to_string(o.group_size())},
                                             {"min_bits", format_number(o.min_bits())},
                                             {"max_bits", format_number(o.max_bits())},
                                             {"init_bits", format_number(o.init_bits())},
                                             {"extra_bits", format_number(o.extra_bits())},
                                             {"param", parametrization_name(o.param())},
                                             {"noise", noise_kind_name(o.noise())}};
  add_discovery_options(options, o.discovery());
  return options;
}

const char* noise_kind_name(NoiseKind kind) {
  return kind == NoiseKind::kGaussian ? "gaussian" : "uniform";
}

NoiseKind parse_noise_kind(const std::string& name) {
  for (auto k : {NoiseKind::kGaussian, NoiseKind::kUniform})
    if (name == noise_kind_name(k)) return k;
  throw Error("unknown noise '" + name + "' (gaussian or uniform)");
}

const char* parametrization_name(Parametrization param) {
  return param == Parametrization::kBits ? "bits" : "noise";
}

Parametrization parse_parametrization(const std::string& name) {
  for (auto p : {Parametrization::kBits, Parametrization::kNoise})
    if (name == parametrization_name(p)) return p;
  throw Error("unknown parametrisation '" + name + "' (bits or noise)");
}

}  // namespace diffq
