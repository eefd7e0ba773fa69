// The quantizer of one-shot mixed-precision quantization.
#include "diffq/oneshot/oneshot_quantizer.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "diffq/error.h"
#include "../kernels/fake_quant.h"
#include "../option_text.h"
#include "../tensor_convert.h"

namespace diffq {
namespace oneshot {

namespace {

double negative_levels(int bits) { return std::ldexp(1.0, bits - 1); }
double positive_levels(int bits) { return std::ldexp(1.0, bits - 1) - 1; }

bool fused(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
}

// The discovery options with every parameter of fewer than two dimensions
// excluded by its exact name (when `matrices_only`).
DiscoveryOptions discovery_for(const ModelRef& model, const OneShotOptions& options) {
  DiscoveryOptions d = options.discovery();
  if (!options.matrices_only()) return d;
  auto exclude = d.exclude();
  for (const auto& p : model.parameters()) {
    if (p.tensor.dim() < 2) {
      // fnmatch pattern matching exactly this name: escape its metacharacters.
      std::string pattern;
      for (char c : p.name) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pattern += '\\';
        pattern += c;
      }
      exclude.push_back(pattern);
    }
  }
  return d.exclude(exclude);
}

std::string parent_of(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

}  // namespace

struct OneShotQuantizer::Layer {
  std::string name;
  bool fixed = false;
  bool depthwise = false;
  std::vector<int> full_weight_candidates;
  std::vector<int> weight_candidates;
  std::vector<int> activation_candidates;
  LayerBits fixed_bits;
  std::shared_ptr<ActivationQuantizerImpl> act;
  std::shared_ptr<SwitchableBatchNorm2dImpl> bn;
  std::shared_ptr<torch::nn::Conv2dImpl> conv;
  std::shared_ptr<torch::nn::LinearImpl> linear;
};

OneShotQuantizer::OneShotQuantizer(const ModelRef& model, OneShotOptions options)
    : Quantizer(model, discovery_for(model, options), "oneshot"), options_(std::move(options)) {
  DIFFQ_CHECK(options_.fixed_bits() >= 2 && options_.fixed_bits() <= 16,
              "the fixed layers' bit-width must be in 2..16, got ", options_.fixed_bits());
  const auto& wc = options_.weight_candidates();
  DIFFQ_CHECK(!wc.empty(), "the weight candidates are empty");
  for (size_t i = 0; i < wc.size(); ++i) {
    DIFFQ_CHECK(wc[i] >= 2 && wc[i] <= 16, "weight candidate ", wc[i], " is not a bit-width in 2..16");
    DIFFQ_CHECK(i == 0 || wc[i] > wc[i - 1], "weight candidates must be strictly ascending, got ", wc[i - 1],
                " before ", wc[i]);
  }
  DIFFQ_CHECK(!slots_.empty(), "the model has no weight to quantize");

  // Modules by name (C++ frontend models): the layer blocks' children.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  if (auto* root = model.nn_module()) {
    for (const auto& item : root->named_modules()) modules[item.key()] = item.value();
  }
  layers_.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& slot = slots_[i];
    auto& layer = layers_[i];
    const std::string owner = parent_of(slot.name);
    const std::string block = parent_of(owner);
    layer.name = owner.empty() ? slot.name : owner;
    if (auto it = modules.find(owner); it != modules.end()) {
      layer.conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(it->second);
      layer.linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(it->second);
    }
    if (!block.empty()) {
      // Siblings of the weight's module: the children of its parent block.
      const std::string prefix = block + ".";
      for (const auto& [name, module] : modules) {
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        if (name.find('.', prefix.size()) != std::string::npos || name == owner) continue;
        if (auto act = std::dynamic_pointer_cast<ActivationQuantizerImpl>(module)) {
          DIFFQ_CHECK(!layer.act, "layer '", owner, "' has two activation quantizers beside it");
          layer.act = act;
        } else if (auto bn = std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(module)) {
          DIFFQ_CHECK(!layer.bn, "layer '", owner, "' has two switchable BatchNorms beside it");
          layer.bn = bn;
        }
      }
      if (layer.act || layer.bn) layer.name = block;
    }
    layer.depthwise = layer.conv && layer.conv->options.groups() > 1 &&
                      layer.conv->options.groups() == layer.conv->options.in_channels();
    // A switchable BatchNorm fixes its layer's weight candidates.
    for (int b : layer.bn ? layer.bn->options.weight_candidates() : wc)
      if (!layer.depthwise || b >= 3) layer.full_weight_candidates.push_back(b);
    DIFFQ_CHECK(!layer.full_weight_candidates.empty(), "depthwise layer '", layer.name,
                "' has no weight candidate of 3 bits or more");
    if (layer.act) layer.activation_candidates = layer.act->options.candidates();
    const bool first = i == 0, last = i + 1 == slots_.size();
    layer.fixed = options_.fix_first_last() && (first || last);
    if (layer.fixed) {
      const int fb = options_.fixed_bits();
      layer.full_weight_candidates = {fb};
      int activation = 0;
      if (last && !first && layer.act) {
        DIFFQ_CHECK(std::count(layer.activation_candidates.begin(), layer.activation_candidates.end(), fb),
                    "the classifier '", layer.name, "' is fixed at ", fb,
                    " bits but its activation quantizer cannot run at ", fb, " bits");
        activation = fb;
      }
      layer.fixed_bits = {fb, activation};
    }
    layer.weight_candidates = layer.full_weight_candidates;
  }

  // Steps: one per full candidate, from the tensor's mean and deviation.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& slot = slots_[i];
    finite_range(slot.tensor, slot.name);
    auto w = slot.tensor.detach().to(torch::kFloat64);
    const double mean = w.mean().item<double>();
    const double std = w.numel() > 1 ? w.std().item<double>() : 0.0;
    const double extent = std::max(std::abs(mean - 3 * std), std::abs(mean + 3 * std));
    std::vector<float> steps;
    for (int b : layers_[i].full_weight_candidates) {
      double s = extent / negative_levels(b);
      if (!(s > 0) || !std::isfinite(s)) s = 1e-8;
      steps.push_back(static_cast<float>(s));
    }
    slot.own = torch::tensor(steps, torch::TensorOptions().dtype(torch::kFloat32))
                   .to(slot.tensor.device())
                   .requires_grad_(true);
  }
  install_hooks();
  config_.layers.resize(layers_.size());
  set_config(max_config());
}

OneShotQuantizer::~OneShotQuantizer() = default;

std::vector<size_t> OneShotQuantizer::searchable_layers() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < layers_.size(); ++i)
    if (!layers_[i].fixed) out.push_back(i);
  return out;
}

Layers OneShotQuantizer::layers() const {
  Layers out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    LayerInfo info;
    info.name = l.name;
    info.weights = slots_[i].tensor.numel();
    info.fixed = l.fixed;
    info.fixed_bits = l.fixed_bits;
    info.weight_candidates = l.weight_candidates;
    info.activation_candidates = l.act && !l.fixed ? l.activation_candidates : std::vector<int>{0};
    if (l.act && !l.act->last_input_sizes().empty()) {
      const auto& in = l.act->last_input_sizes();
      const int64_t batch = in.empty() ? 1 : std::max<int64_t>(1, in[0]);
      if (l.conv && in.size() == 4) {
        const auto& o = l.conv->options;
        int64_t positions = 1;
        for (int d = 0; d < 2; ++d) {
          const auto* explicit_padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
          int64_t size = in[2 + d];  // padding "same"
          if (explicit_padding || c10::holds_alternative<torch::enumtype::kValid>(o.padding())) {
            const int64_t padding = explicit_padding ? (*explicit_padding)->at(d) : 0;
            size = (in[2 + d] + 2 * padding - o.dilation()->at(d) * (o.kernel_size()->at(d) - 1) - 1) /
                       o.stride()->at(d) +
                   1;
          }
          positions *= size;
        }
        info.macs = info.weights * positions;
      } else if (l.linear && !in.empty()) {
        int64_t elements = 1;
        for (auto s : in) elements *= s;
        info.macs = info.weights * (elements / batch / std::max<int64_t>(1, in.back()));
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

BitConfig OneShotQuantizer::max_config() const {
  BitConfig c;
  for (const auto& l : layers_) {
    if (l.fixed) {
      c.layers.push_back(l.fixed_bits);
    } else {
      c.layers.push_back({l.weight_candidates.back(), l.act ? l.activation_candidates.back() : 0});
    }
  }
  return c;
}

BitConfig OneShotQuantizer::random_config(std::mt19937_64& generator) const {
  BitConfig c;
  for (const auto& l : layers_) {
    if (l.fixed) {
      c.layers.push_back(l.fixed_bits);
      continue;
    }
    std::uniform_int_distribution<size_t> w(0, l.weight_candidates.size() - 1);
    LayerBits bits{l.weight_candidates[w(generator)], 0};
    if (l.act) {
      std::uniform_int_distribution<size_t> a(0, l.activation_candidates.size() - 1);
      bits.activation = l.activation_candidates[a(generator)];
    }
    c.layers.push_back(bits);
  }
  return c;
}

void OneShotQuantizer::set_config(const BitConfig& config) {
  DIFFQ_CHECK(config.layers.size() == layers_.size(), "the configuration has ", config.layers.size(),
              " layers, the model ", layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    const auto& b = config.layers[i];
    if (l.fixed) {
      DIFFQ_CHECK(b == l.fixed_bits, "layer '", l.name, "' is fixed at W", l.fixed_bits.weight, "A",
                  l.fixed_bits.activation, ", the configuration asks W", b.weight, "A", b.activation);
    } else {
      DIFFQ_CHECK(std::count(l.weight_candidates.begin(), l.weight_candidates.end(), b.weight), "layer '",
                  l.name, "' cannot run at ", b.weight, " weight bits now");
      if (l.act) {
        DIFFQ_CHECK(std::count(l.activation_candidates.begin(), l.activation_candidates.end(), b.activation),
                    "layer '", l.name, "' has no activation bit-width ", b.activation);
      } else {
        DIFFQ_CHECK(b.activation == 0, "layer '", l.name, "' has no activation quantizer (activation bits 0), "
                    "the configuration asks ", b.activation);
      }
    }
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    const auto& b = config.layers[i];
    if (l.act) l.act->set_bits(b.activation);
    if (l.bn) l.bn->select(b.weight, l.fixed ? l.bn->options.activation_candidates().back() : b.activation);
  }
  config_ = config;
}

const std::vector<int>& OneShotQuantizer::weight_candidates(size_t layer) const {
  return layers_.at(layer).weight_candidates;
}

const std::vector<int>& OneShotQuantizer::full_weight_candidates(size_t layer) const {
  return layers_.at(layer).full_weight_candidates;
}

void OneShotQuantizer::set_weight_candidates(size_t layer, const std::vector<int>& candidates) {
  auto& l = layers_.at(layer);
  DIFFQ_CHECK(!candidates.empty(), "layer '", l.name, "' needs at least one weight candidate");
  for (size_t i = 0; i < candidates.size(); ++i) {
    DIFFQ_CHECK(std::count(l.full_weight_candidates.begin(), l.full_weight_candidates.end(), candidates[i]),
                "layer '", l.name, "' has no weight candidate ", candidates[i]);
    DIFFQ_CHECK(i == 0 || candidates[i] > candidates[i - 1], "candidates must be ascending");
  }
  l.weight_candidates = candidates;
  auto& bits = config_.layers.at(layer);
  if (!std::count(candidates.begin(), candidates.end(), bits.weight)) {
    bits.weight = bits.weight < candidates.front() ? candidates.front() : candidates.back();
    if (l.bn) l.bn->select(bits.weight, bits.activation);
  }
}

std::vector<int> OneShotQuantizer::scheduler_floor() const {
  std::vector<int> out;
  for (const auto& l : layers_) out.push_back(l.fixed ? -1 : (l.depthwise ? 3 : 2));
  return out;
}

size_t OneShotQuantizer::step_index(size_t layer, int bits) const {
  const auto& c = layers_.at(layer).full_weight_candidates;
  auto it = std::find(c.begin(), c.end(), bits);
  DIFFQ_CHECK(it != c.end(), "layer '", layers_[layer].name, "' has no weight bit-width ", bits);
  return static_cast<size_t>(it - c.begin());
}

double OneShotQuantizer::weight_step(size_t layer, int bits) const {
  return slots_.at(layer).own.detach()[static_cast<int64_t>(step_index(layer, bits))].item<double>();
}

ActivationQuantizerImpl* OneShotQuantizer::activation_quantizer(size_t layer) const {
  return layers_.at(layer).act.get();
}

SwitchableBatchNorm2dImpl* OneShotQuantizer::batch_norm(size_t layer) const { return layers_.at(layer).bn.get(); }

size_t OneShotQuantizer::layer_of(const detail::Slot& slot) const {
  return static_cast<size_t>(&slot - slots_.data());
}

float OneShotQuantizer::current_step(size_t layer) const {
  const int bits = config_.layers.at(layer).weight;
  const float step = slots_[layer].own.detach()[static_cast<int64_t>(step_index(layer, bits))].item<float>();
  DIFFQ_CHECK(std::isfinite(step) && step > 0, "weight step of '", layers_[layer].name, "' at ", bits,
              " bits is not a positive number (", step, "); lower the learning rate");
  return step;
}

torch::Tensor OneShotQuantizer::training_data(detail::Slot& slot) {
  const size_t layer = layer_of(slot);
  const int bits = config_.layers[layer].weight;
  const float step = current_step(layer);
  if (!fused(slot.latent)) {
    finite_range(slot.latent, slot.name);
    return torch::clamp(torch::round(slot.latent / step), -negative_levels(bits), positive_levels(bits)) * step;
  }
  auto out = new_buffer(slot.latent);
  // The weights' check in the same pass (the buffer is dropped when it fails).
  const bool finite = kernels::lsq_forward(slot.latent.data_ptr<float>(), out.data_ptr<float>(), out.numel(), step,
                                           float(negative_levels(bits)), float(positive_levels(bits)));
  DIFFQ_CHECK(finite, "parameter '", slot.name, "' contains NaN or infinite values; it cannot be quantized");
  return out;
}

torch::Tensor OneShotQuantizer::backward(detail::Slot& slot, const torch::Tensor& grad) {
  const size_t layer = layer_of(slot);
  const int bits = config_.layers[layer].weight;
  const double qn = negative_levels(bits), qp = positive_levels(bits);
  const float step = current_step(layer);
  const auto index = static_cast<int64_t>(step_index(layer, bits));
  double sum = 0;
  torch::Tensor out;
  if (fused(slot.latent) && fused(grad)) {
    out = gradient_buffer(slot, grad);
    sum = kernels::lsq_backward(slot.latent.data_ptr<float>(), grad.data_ptr<float>(), out.data_ptr<float>(),
                                grad.numel(), step, float(qn), float(qp));
  } else {
    auto v = slot.latent.to(grad.scalar_type()) / step;
    auto below = v <= -qn;
    auto above = v >= qp;
    auto inside = torch::logical_not(torch::logical_or(below, above));
    auto dstep = torch::where(inside, torch::round(v) - v,
                              torch::where(below, torch::full({}, -qn, v.options()), torch::full({}, qp, v.options())));
    sum = (grad * dstep).sum().item<double>();
    out = grad * inside.to(grad.scalar_type());
  }
  auto& own_grad = slot.own.mutable_grad();
  if (!own_grad.defined()) own_grad = torch::zeros_like(slot.own);
  own_grad[index] += sum;  // only the running candidate's step learns
  return out;
}

torch::Tensor OneShotQuantizer::quantized_data(const detail::Slot& slot) const {
  const size_t layer = layer_of(slot);
  const int bits = config_.layers[layer].weight;
  auto w32 = slot.tensor.detach().to(torch::kFloat32).contiguous();
  finite_range(w32, slot.name);
  const float step = current_step(layer);
  auto out = torch::empty_like(w32);
  kernels::lsq_forward(w32.data_ptr<float>(), out.data_ptr<float>(), w32.numel(), step,
                       float(negative_levels(bits)), float(positive_levels(bits)));
  return out.to(slot.tensor.scalar_type());
}

TensorRecord OneShotQuantizer::quantized_record(const detail::Slot& slot) const {
  const size_t layer = layer_of(slot);
  const int bits = config_.layers[layer].weight;
  auto w32 = slot.tensor.detach().to(torch::kFloat32);
  finite_range(w32, slot.name);
  const float step = current_step(layer);
  TensorRecord record;
  record.encoding = Encoding::kLSQ;
  record.bits = bits;
  record.step = step;
  record.levels = levels_to_vector(
      torch::clamp(torch::round(w32 / step), -negative_levels(bits), positive_levels(bits)) + negative_levels(bits));
  return record;
}

double OneShotQuantizer::true_model_size() const {
  double bits = leftover_bits();
  for (size_t i = 0; i < slots_.size(); ++i) {
    bits += config_.layers.at(i).weight * static_cast<double>(slots_[i].tensor.numel()) + 32.0;
  }
  return bits / (8.0 * 1048576.0);
}

torch::Tensor OneShotQuantizer::model_size() const { return torch::full({}, true_model_size(), torch::kFloat64); }

std::vector<double> OneShotQuantizer::turbulence() const {
  torch::NoGradGuard no_grad;
  std::vector<double> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    if (l.fixed) {
      out.push_back(0.0);
      continue;
    }
    auto w = slots_[i].tensor.detach().to(torch::kFloat32);
    double total = 0;
    for (int b : l.weight_candidates) {
      const float step = slots_[i].own.detach()[static_cast<int64_t>(step_index(i, b))].item<float>();
      auto v = w / step;
      auto distance = (v - torch::round(v)).abs();
      auto counted = (distance > 0.375f).logical_and(v >= -negative_levels(b)).logical_and(v <= positive_levels(b));
      total += counted.sum().item<double>() / static_cast<double>(w.numel()) / b;
    }
    out.push_back(total / static_cast<double>(l.weight_candidates.size()));
  }
  return out;
}

void OneShotQuantizer::set_capture(bool capture) {
  for (auto& l : layers_)
    if (l.bn) l.bn->set_capture(capture);
}

std::vector<torch::Tensor> OneShotQuantizer::captured_outputs() const {
  std::vector<torch::Tensor> out;
  for (const auto& l : layers_) out.push_back(l.bn ? l.bn->captured() : torch::Tensor());
  return out;
}

torch::Tensor OneShotQuantizer::distortion(const std::vector<torch::Tensor>& reference) const {
  DIFFQ_CHECK(reference.size() == layers_.size(), "the distortion needs one reference per layer (",
              layers_.size(), "), got ", reference.size());
  torch::Tensor total;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    if (l.fixed || !l.bn || config_.layers[i].weight != l.weight_candidates.front()) continue;
    const auto& out = l.bn->captured();
    if (!out.defined() || !reference[i].defined()) continue;
    DIFFQ_CHECK(out.sizes() == reference[i].sizes(), "layer '", l.name, "': output ", out.sizes(),
                " but reference ", reference[i].sizes());
    auto term = torch::mse_loss(out, reference[i].detach());
    total = total.defined() ? total + term : term;
  }
  return total.defined() ? total : torch::zeros({});
}

std::map<std::string, std::string> OneShotQuantizer::option_map() const {
  std::string candidates;
  for (int b : options_.weight_candidates()) candidates += (candidates.empty() ? "" : ",") + std::to_string(b);
  std::map<std::string, std::string> options{{"weight_candidates", candidates},
                                             {"fixed_bits", std::to_string(options_.fixed_bits())},
                                             {"fix_first_last", options_.fix_first_last() ? "1" : "0"},
                                             {"config", to_json(layers(), config_).dump()}};
  add_discovery_options(options, options_.discovery());
  return options;
}

bool apply_stored_config(torch::nn::Module& model, const std::map<std::string, std::string>& options) {
  const auto it = options.find("config");
  if (it == options.end()) return false;
  const auto json = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || json.value("format", "") != "diffq-bitconfig") return false;
  DIFFQ_CHECK(json.contains("layers") && json["layers"].is_array(), "the stored configuration has no layers");
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  for (const auto& item : model.named_modules()) modules[item.key()] = item.value();
  for (const auto& entry : json["layers"]) {
    DIFFQ_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                    entry.contains("weight_bits") && entry["weight_bits"].is_number_integer() &&
                    entry.contains("activation_bits") && entry["activation_bits"].is_number_integer(),
                "a layer of the stored configuration lacks its name or bits");
    const auto name = entry["name"].get<std::string>();
    const int w = entry["weight_bits"].get<int>(), a = entry["activation_bits"].get<int>();
    if (auto act = modules.find(name + ".act"); act != modules.end()) {
      auto q = std::dynamic_pointer_cast<ActivationQuantizerImpl>(act->second);
      DIFFQ_CHECK(q != nullptr, "'", name, ".act' is not an activation quantizer");
      q->set_bits(a);
    } else {
      DIFFQ_CHECK(a == 0, "the stored configuration quantizes the input of '", name,
                  "' but the model has no activation quantizer there");
    }
    if (auto bn = modules.find(name + ".bn"); bn != modules.end()) {
      auto n = std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(bn->second);
      DIFFQ_CHECK(n != nullptr, "'", name, ".bn' is not a switchable BatchNorm");
      n->select(w, a != 0 ? a : n->options.activation_candidates().back());
    }
  }
  return true;
}

}  // namespace oneshot
}  // namespace diffq
