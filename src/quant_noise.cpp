// Quant-Noise: block proxy drop, scalar int4/int8 noise, and iterative
// product quantization with centroid fine-tuning.
#include "diffq/quant_noise.h"

#include <cmath>
#include <cstring>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/kmeans.h"
#include "diffq/number_text.h"
#include "kernels/fake_quant.h"
#include "name_match.h"
#include "noise/noise_kernels.h"
#include "option_text.h"
#include "tensor_convert.h"

namespace diffq {

const char* quant_noise_mode_name(QuantNoiseMode mode) {
  switch (mode) {
    case QuantNoiseMode::kProxyDrop: return "proxy_drop";
    case QuantNoiseMode::kScalarInt4: return "int4";
    case QuantNoiseMode::kScalarInt8: return "int8";
    case QuantNoiseMode::kIPQ: return "ipq";
  }
  return "unknown";
}

QuantNoiseMode parse_quant_noise_mode(const std::string& name) {
  if (name == "proxy") return QuantNoiseMode::kProxyDrop;
  for (auto m : {QuantNoiseMode::kProxyDrop, QuantNoiseMode::kScalarInt4,
                 QuantNoiseMode::kScalarInt8, QuantNoiseMode::kIPQ})
    if (name == quant_noise_mode_name(m)) return m;
  throw Error("unknown Quant-Noise mode '" + name + "' (one of: proxy (proxy_drop), int4, int8, ipq)");
}

const char* centroid_reduction_name(CentroidReduction reduction) {
  return reduction == CentroidReduction::kSum ? "sum" : "mean";
}

namespace {

const char* mode_name(QuantNoiseMode mode) { return quant_noise_mode_name(mode); }


// Channels of the per-channel ranges: dim 0 of tensors with 2+ dims.
int64_t channels_of(const torch::Tensor& t) { return t.dim() >= 2 ? t.size(0) : 1; }

// Float32 for the computations (float64 kept for double models).
torch::ScalarType work_type(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

}  // namespace

BlockLayout block_layout(const std::vector<int64_t>& shape, int64_t block_size,
                         int64_t conv_block_size) {
  BlockLayout out;
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (numel == 0) {
    out.reason = "empty tensor";
    return out;
  }
  if (shape.size() == 2 || ((shape.size() == 3 || shape.size() == 4) && numel / shape[0] / shape[1] == 1)) {
    const int64_t in = shape[1];
    if (in % block_size != 0) {
      out.reason = detail::concat("input dimension ", in, " is not divisible by the block size ",
                                  block_size);
      return out;
    }
    out.supported = true;
    out.noise_block = block_size;
    out.pq_block = block_size;
    return out;
  }
  if (shape.size() == 3 || shape.size() == 4) {
    const int64_t kernel = numel / shape[0] / shape[1];
    const int64_t pq = conv_block_size == 0 ? kernel : conv_block_size;
    if ((shape[1] * kernel) % pq != 0) {
      out.reason = detail::concat("filter size ", shape[1] * kernel,
                                  " is not divisible by the conv block size ", pq);
      return out;
    }
    out.supported = true;
    out.noise_block = kernel;
    out.pq_block = pq;
    return out;
  }
  out.reason = detail::concat(shape.size(), "-D tensors have no block layout");
  return out;
}

QuantNoiseQuantizer::QuantNoiseQuantizer(const ModelRef& model, QuantNoiseOptions options)
    : Quantizer(model, options.discovery(), "quant_noise"), options_(std::move(options)) {
  const auto& o = options_;
  DIFFQ_CHECK(o.block_size() >= 1, "quant-noise: block_size must be positive, got ",
              o.block_size());
  DIFFQ_CHECK(o.conv_block_size() >= 0, "quant-noise: conv_block_size must be >= 0, got ",
              o.conv_block_size());
  DIFFQ_CHECK(o.num_centroids() >= 1 && o.num_centroids() <= 65536,
              "quant-noise: num_centroids must be in 1..65536, got ", o.num_centroids());
  DIFFQ_CHECK(o.kmeans_iterations() >= 1, "quant-noise: kmeans_iterations must be positive");
  DIFFQ_CHECK(o.refresh_every() >= 1, "quant-noise: refresh_every must be positive");
  set_p(o.p());
  if (!scalar()) relocate_unsupported();
  layers_.resize(slots_.size());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    finite_range(slots_[i].tensor, slots_[i].name);
    if (!scalar()) {
      layers_[i].layout = block_layout(slots_[i].tensor.sizes().vec(), o.block_size(),
                                       o.conv_block_size());
    }
  }
  install_hooks();
}

void QuantNoiseQuantizer::set_p(double p) {
  if (scalar()) {
    DIFFQ_CHECK(std::isfinite(p) && p >= 0 && p <= 1, "quant-noise: p must be in [0, 1], got ",
                p);
  } else {
    DIFFQ_CHECK(std::isfinite(p) && p >= 0 && p < 1,
                "quant-noise: the proxy-drop probability p must be in [0, 1), got ", p);
  }
  options_.p(p);
}

bool QuantNoiseQuantizer::scalar() const {
  return options_.mode() == QuantNoiseMode::kScalarInt4 ||
         options_.mode() == QuantNoiseMode::kScalarInt8;
}

int QuantNoiseQuantizer::bits() const {
  return options_.mode() == QuantNoiseMode::kScalarInt4 ? 4 : 8;
}

size_t QuantNoiseQuantizer::index_of(const detail::Slot& slot) const {
  return static_cast<size_t>(&slot - slots_.data());
}

void QuantNoiseQuantizer::relocate_unsupported() {
  // Parameters without a block layout become float leftovers, in model order.
  std::vector<detail::Slot> kept;
  std::vector<detail::Leftover> leftovers;
  std::vector<std::pair<bool, size_t>> order;
  std::vector<size_t> new_index(slots_.size(), static_cast<size_t>(-1));
  for (const auto& entry : order_) {
    if (!entry.first) {
      leftovers.push_back(leftovers_[entry.second]);
      order.push_back({false, leftovers.size() - 1});
      continue;
    }
    const auto& slot = slots_[entry.second];
    const auto layout = block_layout(slot.tensor.sizes().vec(), options_.block_size(),
                                     options_.conv_block_size());
    if (layout.supported) {
      new_index[entry.second] = kept.size();
      kept.push_back(slot);
      kept.back().storage_index = new_index[slot.storage_index];
      order.push_back({true, kept.size() - 1});
    } else {
      detail::Leftover leftover;
      leftover.name = slot.name;
      leftover.aliases = slot.aliases;
      leftover.tensor = slot.tensor;
      leftover.float16 = discovery_.float16();
      leftovers.push_back(std::move(leftover));
      order.push_back({false, leftovers.size() - 1});
    }
  }
  slots_ = std::move(kept);
  leftovers_ = std::move(leftovers);
  order_ = std::move(order);
}

void QuantNoiseQuantizer::check_idle(const char* what) const {
  for (const auto& slot : slots_) {
    DIFFQ_CHECK(!slot.latent.defined(), "quant-noise: ", what,
                " needs the float weights: finish the active training step or evaluation scope");
  }
}

torch::Tensor QuantNoiseQuantizer::bernoulli(int64_t n, const detail::Slot& slot) {
  // A pure function of (seed, step, tensor): resumed runs draw what an
  // uninterrupted run draws, and every thread count the same.
  auto draw = torch::empty({n}, torch::kBool);
  const uint64_t key = noise::mix_key(options_.seed(), static_cast<uint64_t>(steps()), index_of(slot));
  noise::bernoulli(key, n, options_.p(), draw.data_ptr<bool>());
  return draw.to(slot.latent.device());
}

// ------------------------------------------------------------ scalar

void QuantNoiseQuantizer::refresh_ranges(Layer& layer, const torch::Tensor& w32) const {
  if (options_.per_channel()) {
    layer.channel_max = w32.reshape({channels_of(w32), -1}).abs().amax(1, true);
  } else {
    const auto range = finite_range(w32, "");
    layer.min = range.first;
    layer.max = range.second;
  }
}

torch::Tensor QuantNoiseQuantizer::fake_quantize(const torch::Tensor& w32, const Layer& stored,
                                                 bool fresh, torch::Tensor* inside,
                                                 torch::Tensor* levels_out) const {
  Layer local;
  const Layer* ranges = &stored;
  if (fresh) {
    refresh_ranges(local, w32);
    ranges = &local;
  }
  const double levels_max = std::pow(2.0, bits()) - 1;
  torch::Tensor values;
  if (options_.per_channel()) {
    // Symmetric per channel: 2^N levels spanning [-a_c, a_c].
    const int64_t c = channels_of(w32);
    auto w2 = w32.reshape({c, -1});
    auto a = ranges->channel_max;
    auto mn = -a;
    auto range = a - mn;
    auto denom = torch::full({1, 1}, levels_max, w32.options());
    auto positive = range > 0;
    auto safe = torch::where(positive, range, torch::ones_like(range));
    auto levels = torch::where(positive, torch::round((w2 - mn) / safe * denom),
                               torch::zeros_like(w2))
                      .clamp(0, levels_max);
    // Stored as kPerChannelUniform (min -a, max a): the same operations in the same order.
    values = levels.div(denom).mul(range).add(mn);
    if (levels_out != nullptr) *levels_out = levels;
    if (inside != nullptr) *inside = ((w2 >= mn) & (w2 <= a)).view(w32.sizes());
  } else {
    // Affine per tensor: exactly the kUniform formula.
    auto denom = torch::full({1, 1}, levels_max, w32.options());
    auto levels = uniform_levels(w32, denom, ranges->min, ranges->max).clamp(0, levels_max);
    values = uniform_values(levels, denom, ranges->min, ranges->max);
    if (levels_out != nullptr) *levels_out = levels;
    if (inside != nullptr) *inside = (w32 >= ranges->min) & (w32 <= ranges->max);
  }
  return values.view(w32.sizes());
}

// ------------------------------------------------------------ PQ

torch::Tensor QuantNoiseQuantizer::decoded(const detail::Slot& slot, bool half) const {
  const auto& layer = layers_[index_of(slot)];
  auto centroids = slot.own.detach();
  if (half) centroids = centroids.to(torch::kFloat16).to(torch::kFloat32);
  return centroids.index_select(0, layer.assignments)
      .reshape(slot.tensor.sizes())
      .to(slot.tensor.scalar_type());
}

std::vector<torch::Tensor> QuantNoiseQuantizer::quantize_layers(const std::vector<size_t>& indices,
                                                                int64_t num_centroids) {
  DIFFQ_CHECK(options_.mode() == QuantNoiseMode::kIPQ,
              "quant-noise: quantize_stage/quantize_layers need mode kIPQ (mode is ",
              mode_name(options_.mode()), ")");
  check_idle("quantize_stage");
  const int64_t k_option = num_centroids == 0 ? options_.num_centroids() : num_centroids;
  DIFFQ_CHECK(k_option >= 1 && k_option <= 65536, "quant-noise: num_centroids must be in "
              "1..65536, got ", k_option);
  std::vector<torch::Tensor> created;
  torch::NoGradGuard no_grad;
  for (size_t index : indices) {
    DIFFQ_CHECK(index < slots_.size(), "quant-noise: layer index ", index, " out of range (",
                slots_.size(), " quantized layers)");
    auto& slot = slots_[index];
    auto& layer = layers_[index];
    if (layer.pq) continue;
    const int64_t d = layer.layout.pq_block;
    const int64_t n_sub = slot.tensor.numel() / d;
    const int64_t k = std::min(k_option, n_sub);
    const auto type = work_type(slot.tensor);
    auto rows = slot.tensor.detach().to(type).reshape({n_sub, d});
    auto result = kmeans(rows, KMeansOptions()
                                   .num_centroids(k)
                                   .iterations(options_.kmeans_iterations())
                                   .seed(options_.seed() + 1000003ULL * (index + 1)));
    slot.own = result.centroids.clone().requires_grad_(true);
    layer.assignments = result.assignments;
    layer.counts =
        torch::bincount(result.assignments, {}, k).to(type).clamp_min(1).unsqueeze(1);
    layer.objective = result.objective;
    layer.pq = true;
    created.push_back(slot.own);
  }
  return created;
}

std::vector<torch::Tensor> QuantNoiseQuantizer::quantize_stage(
    const std::vector<std::string>& patterns, int64_t num_centroids) {
  std::vector<size_t> indices;
  bool matched = false;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!name_matches_any(patterns, slots_[i].name)) continue;
    matched = true;
    indices.push_back(i);
  }
  DIFFQ_CHECK(matched, "quant-noise: no quantized layer matches the stage patterns");
  return quantize_layers(indices, num_centroids);
}

std::vector<std::vector<std::string>> QuantNoiseQuantizer::stages_by_depth(
    int64_t num_stages) const {
  const int64_t m = static_cast<int64_t>(slots_.size());
  DIFFQ_CHECK(num_stages >= 1, "quant-noise: num_stages must be positive");
  const int64_t n = std::min(num_stages, m);
  std::vector<std::vector<std::string>> out(static_cast<size_t>(n));
  for (int64_t g = 0; g < n; ++g) {
    for (int64_t i = g * m / n; i < (g + 1) * m / n; ++i) out[g].push_back(slots_[i].name);
  }
  return out;
}

bool QuantNoiseQuantizer::is_product_quantized(const std::string& name) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].name == name) return layers_[i].pq;
  }
  return false;
}

std::vector<std::string> QuantNoiseQuantizer::pending_names() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!layers_[i].pq) out.push_back(slots_[i].name);
  }
  return out;
}

std::vector<double> QuantNoiseQuantizer::kmeans_objective(const std::string& name) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].name == name) return layers_[i].objective;
  }
  return {};
}

// ------------------------------------------------------------ framework hooks

torch::Tensor QuantNoiseQuantizer::training_data(detail::Slot& slot) {
  auto& layer = layers_[index_of(slot)];
  layer.pass = torch::Tensor();
  if (layer.pq) return decoded(slot, /*half=*/false);  // centroids, no noise
  const double p = options_.p();
  if (p == 0) return torch::Tensor();  // no noise: the float weights stay
  const auto& w = slot.latent;
  if (scalar()) {
    auto w32 = w.to(work_type(w));
    if (layer.range_step < 0 || steps_ - layer.range_step >= options_.refresh_every()) {
      refresh_ranges(layer, w32);
      layer.range_step = steps_;
    }
    auto selected = bernoulli(w.numel(), slot).view(w.sizes());
    if (!options_.per_channel() && layer.max > layer.min && w.device().is_cpu() &&
        w.scalar_type() == torch::kFloat32 && w.is_contiguous()) {
      // One fused pass: the same float operations as the tensor expressions below.
      auto out = new_buffer(w);
      layer.pass = torch::empty(w.sizes(), torch::kBool);
      kernels::noise_fake_quant(w.data_ptr<float>(), selected.data_ptr<bool>(), out.data_ptr<float>(),
                                layer.pass.data_ptr<bool>(), w.numel(), layer.min, layer.max,
                                static_cast<float>(std::pow(2.0, bits()) - 1));
      return out;
    }
    torch::Tensor inside;
    auto q = fake_quantize(w32, layer, /*fresh=*/false, &inside);
    // STE with clamp: selected entries outside the range get no gradient.
    layer.pass = torch::logical_not(selected & torch::logical_not(inside));
    return torch::where(selected, q.to(w.scalar_type()), w);
  }
  // Proxy drop over blocks, inverted-dropout scaling, latent untouched.
  const int64_t b = layer.layout.noise_block;
  const int64_t blocks = w.numel() / b;
  auto drop = bernoulli(blocks, slot);
  if (w.device().is_cpu() && w.scalar_type() == torch::kFloat32 && w.is_contiguous()) {
    auto out = new_buffer(w);  // one fused pass: the same float operations as below
    kernels::proxy_drop(w.data_ptr<float>(), drop.data_ptr<bool>(), out.data_ptr<float>(), w.numel(), b,
                        static_cast<float>(1.0 - p));
    return out;
  }
  drop = drop.unsqueeze(1);
  auto flat = w.contiguous().view({blocks, b});
  return torch::where(drop, torch::zeros({}, w.options()), flat / (1.0 - p)).view(w.sizes());
}

torch::Tensor QuantNoiseQuantizer::backward(detail::Slot& slot, const torch::Tensor& grad) {
  auto& layer = layers_[index_of(slot)];
  if (layer.pq) {
    // Frozen assignments: the centroid gets the sum (or mean) of the
    // gradients of its blocks; the latent weight gets nothing.
    const int64_t d = layer.layout.pq_block;
    auto blocks = grad.reshape({-1, d}).to(slot.own.scalar_type());
    auto cg = torch::zeros_like(slot.own).index_add_(0, layer.assignments, blocks);
    if (options_.centroid_reduction() == CentroidReduction::kMean) cg = cg / layer.counts;
    auto& own_grad = slot.own.mutable_grad();
    if (own_grad.defined()) {
      own_grad.add_(cg);
    } else {
      own_grad = cg;
    }
    return torch::zeros_like(grad);
  }
  if (layer.pass.defined()) {
    torch::Tensor out;
    if (grad.device().is_cpu() && grad.scalar_type() == torch::kFloat32 && grad.is_contiguous() &&
        layer.pass.device().is_cpu() && layer.pass.is_contiguous() && layer.pass.numel() == grad.numel()) {
      out = gradient_buffer(slot, grad);  // the step's quantized buffer when nothing else holds it
      kernels::masked_gradient(grad.data_ptr<float>(), layer.pass.data_ptr<bool>(), out.data_ptr<float>(),
                               grad.numel());
    } else {
      out = grad * layer.pass.to(grad.scalar_type());
    }
    layer.pass = torch::Tensor();
    return out;
  }
  return grad;  // identity (straight through the drop)
}

void QuantNoiseQuantizer::on_unused(detail::Slot& slot) { layers_[index_of(slot)].pass = torch::Tensor(); }

torch::Tensor QuantNoiseQuantizer::quantized_data(const detail::Slot& slot) const {
  const auto& layer = layers_[index_of(slot)];
  if (layer.pq) return decoded(slot, /*half=*/true);
  const auto& t = slot.tensor;
  if (scalar()) {
    auto w32 = t.detach().to(torch::kFloat32);
    finite_range(w32, slot.name);
    return fake_quantize(w32, layer, /*fresh=*/true, nullptr).to(t.scalar_type());
  }
  // Not quantized (proxy drop, or a layer iPQ has not reached): float, as stored.
  return t.detach()
      .to(discovery_.float16() ? torch::kFloat16 : torch::kFloat32)
      .to(t.scalar_type());
}

TensorRecord QuantNoiseQuantizer::quantized_record(const detail::Slot& slot) const {
  const auto& layer = layers_[index_of(slot)];
  const auto& t = slot.tensor;
  if (layer.pq) {
    TensorRecord record;
    record.encoding = Encoding::kProductQuantized;
    record.block_size = layer.layout.pq_block;
    record.num_centroids = slot.own.size(0);
    auto half = slot.own.detach().to(torch::kCPU, torch::kFloat16).contiguous();
    record.codebook.resize(static_cast<size_t>(half.numel()));
    std::memcpy(record.codebook.data(), half.data_ptr(), half.numel() * sizeof(uint16_t));
    record.levels = levels_to_vector(layer.assignments);
    return record;
  }
  if (scalar()) {
    auto w32 = t.detach().to(torch::kFloat32);
    const auto range = finite_range(w32, slot.name);
    if (!options_.per_channel()) {
      // Exactly kUniform: level / (2^N - 1) * (max - min) + min.
      auto denom = torch::full({1, 1}, std::pow(2.0, bits()) - 1, w32.options());
      TensorRecord record;
      record.encoding = Encoding::kUniform;
      record.bits = bits();
      record.min = range.first;
      record.max = range.second;
      record.levels = levels_to_vector(uniform_levels(w32, denom, range.first, range.second));
      return record;
    }
    // Per-channel symmetric ranges [-a_c, a_c]: kPerChannelUniform, whose
    // dequantization is the evaluation's arithmetic (a single channel, for
    // tensors of fewer than 2 dims, is exactly kUniform on [-a, a]).
    Layer ranges;
    refresh_ranges(ranges, w32);
    torch::Tensor levels;
    fake_quantize(w32, ranges, /*fresh=*/false, nullptr, &levels);
    auto a = ranges.channel_max.to(torch::kCPU, torch::kFloat32).contiguous();
    const float* top = a.data_ptr<float>();
    TensorRecord record;
    record.bits = bits();
    record.levels = levels_to_vector(levels);
    if (t.dim() < 2) {
      record.encoding = Encoding::kUniform;
      record.min = -top[0];
      record.max = top[0];
      return record;
    }
    record.encoding = Encoding::kPerChannelUniform;
    record.channel_max.assign(top, top + a.numel());
    record.channel_min.resize(record.channel_max.size());
    for (size_t c = 0; c < record.channel_max.size(); ++c) record.channel_min[c] = -record.channel_max[c];
    return record;
  }
  return float_record(slot.name, t, discovery_.float16());
}

double QuantNoiseQuantizer::true_model_size() const {
  double bits_total = leftover_bits();
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& slot = slots_[i];
    const auto& layer = layers_[i];
    const double n = static_cast<double>(slot.tensor.numel());
    if (layer.pq) {
      const double k = static_cast<double>(slot.own.size(0));
      const double d = static_cast<double>(layer.layout.pq_block);
      bits_total += n / d * std::log2(k) + 16.0 * k * d;
    } else if (scalar()) {
      // Two float32 per range: per tensor (kUniform), or per channel
      // (kPerChannelUniform stores min and max of each channel).
      bits_total += bits() * n + 64.0 * static_cast<double>(options_.per_channel()
                                                                ? channels_of(slot.tensor)
                                                                : 1);
    } else {
      bits_total += (discovery_.float16() ? 16.0 : 32.0) * n;
    }
  }
  return bits_total / (8.0 * 1048576.0);
}

torch::Tensor QuantNoiseQuantizer::model_size() const {
  return torch::full({}, true_model_size(), torch::kFloat64);
}

std::map<std::string, std::string> QuantNoiseQuantizer::option_map() const {
  const auto& o = options_;
  std::map<std::string, std::string> options{{"mode", mode_name(o.mode())},
          {"p", format_number(o.p())},
          {"block_size", std::to_string(o.block_size())},
          {"conv_block_size", std::to_string(o.conv_block_size())},
          {"num_centroids", std::to_string(o.num_centroids())},
          {"kmeans_iterations", std::to_string(o.kmeans_iterations())},
          {"refresh_every", std::to_string(o.refresh_every())},
          {"per_channel", o.per_channel() ? "true" : "false"},
          {"centroid_reduction", centroid_reduction_name(o.centroid_reduction())},
          {"seed", std::to_string(o.seed())}};
  add_discovery_options(options, o.discovery());
  return options;
}

}  // namespace diffq
