// Modules of one-shot mixed-precision quantization.
#include "diffq/oneshot/modules.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

std::vector<int> default_candidates() { return {2, 3, 4, 5, 6}; }

namespace {

void check_candidates(const std::vector<int>& candidates, int lowest, const char* what) {
  DIFFQ_CHECK(!candidates.empty(), what, " candidates are empty");
  for (size_t i = 0; i < candidates.size(); ++i) {
    DIFFQ_CHECK(candidates[i] >= lowest && candidates[i] <= 16, what, " candidate ", candidates[i],
                " is not a bit-width in ", lowest, "..16");
    DIFFQ_CHECK(i == 0 || candidates[i] > candidates[i - 1], what,
                " candidates must be strictly ascending, got ", candidates[i - 1], " before ", candidates[i]);
  }
}

// Levels below and above zero of a bit-width.
double negative_levels(int bits, bool is_signed) { return is_signed ? std::ldexp(1.0, bits - 1) : 0.0; }
double positive_levels(int bits, bool is_signed) {
  return is_signed ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
}

}  // namespace

// ---------------------------------------------------------------- activation quantizer

ActivationQuantizerImpl::ActivationQuantizerImpl(ActivationQuantizerOptions options_)
    : options(std::move(options_)) {
  check_candidates(options.candidates(), options.is_signed() ? 2 : 1, "activation");
  reset();
}

void ActivationQuantizerImpl::reset() {
  const auto n = static_cast<int64_t>(options.candidates().size());
  steps = register_parameter("steps", torch::ones({n}));
  initialized = register_buffer("initialized", torch::zeros({n}, torch::kBool));
  bits_ = 0;
}

size_t ActivationQuantizerImpl::index_of(int bits) const {
  const auto& c = options.candidates();
  auto it = std::find(c.begin(), c.end(), bits);
  DIFFQ_CHECK(it != c.end(), "activation bit-width ", bits, " is not one of the candidates");
  return static_cast<size_t>(it - c.begin());
}

void ActivationQuantizerImpl::set_bits(int bits) {
  if (bits != 0) index_of(bits);
  bits_ = bits;
}

torch::Tensor ActivationQuantizerImpl::forward(const torch::Tensor& x) {
  last_input_sizes_ = x.sizes().vec();
  if (bits_ == 0) return x;
  const auto index = static_cast<int64_t>(index_of(bits_));
  const double qn = negative_levels(bits_, options.is_signed());
  const double qp = positive_levels(bits_, options.is_signed());
  if (!initialized[index].item<bool>()) {
    torch::NoGradGuard no_grad;
    double init = 2.0 * x.detach().abs().mean().item<double>() / std::sqrt(qp);
    if (!(init > 0) || !std::isfinite(init)) init = 1e-8;
    steps[index].fill_(init);
    initialized[index].fill_(true);
  }
  auto step = steps.select(0, index);
  const float value = step.item<float>();
  DIFFQ_CHECK(std::isfinite(value) && value > 0, "activation step for ", bits_,
              " bits is not a positive number (", value, "); lower the learning rate");
  // round_pass: rounding straight through; d/ds gives round(v) - v inside
  // the range and -Q_N / Q_P outside (LSQ without gradient scaling).
  auto v = torch::clamp(x / step, -qn, qp);
  auto rounded = (torch::round(v) - v).detach() + v;
  return rounded * step;
}

// ---------------------------------------------------------------- switchable BatchNorm

SwitchableBatchNorm2dImpl::SwitchableBatchNorm2dImpl(SwitchableBatchNormOptions options_)
    : options(std::move(options_)) {
  DIFFQ_CHECK(options.num_features() > 0, "switchable BatchNorm needs channels, got ",
              options.num_features());
  check_candidates(options.weight_candidates(), 1, "weight");
  if (!options.by_weight_bits()) check_candidates(options.activation_candidates(), 1, "activation");
  reset();
}

std::string SwitchableBatchNorm2dImpl::child_name(int weight_bits, int activation_bits) const {
  std::string name = "w" + std::to_string(weight_bits);
  if (!options.by_weight_bits()) name += "a" + std::to_string(activation_bits);
  return name;
}

void SwitchableBatchNorm2dImpl::reset() {
  norms_.clear();
  const std::vector<int> activation_bits =
      options.by_weight_bits() ? std::vector<int>{0} : options.activation_candidates();
  for (int w : options.weight_candidates()) {
    for (int a : activation_bits) {
      norms_.push_back(register_module(
          child_name(w, a), torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(options.num_features())
                                                       .momentum(options.momentum())
                                                       .eps(options.eps()))));
    }
  }
  selected_ = norms_.size() - 1;
}

size_t SwitchableBatchNorm2dImpl::index_of(int weight_bits, int activation_bits) const {
  const auto& wc = options.weight_candidates();
  auto w = std::find(wc.begin(), wc.end(), weight_bits);
  DIFFQ_CHECK(w != wc.end(), "switchable BatchNorm has no weight bit-width ", weight_bits);
  const auto wi = static_cast<size_t>(w - wc.begin());
  if (options.by_weight_bits()) return wi;
  const auto& ac = options.activation_candidates();
  auto a = std::find(ac.begin(), ac.end(), activation_bits);
  DIFFQ_CHECK(a != ac.end(), "switchable BatchNorm has no activation bit-width ", activation_bits);
  return wi * ac.size() + static_cast<size_t>(a - ac.begin());
}

void SwitchableBatchNorm2dImpl::select(int weight_bits, int activation_bits) {
  selected_ = index_of(weight_bits, activation_bits);
}

void SwitchableBatchNorm2dImpl::copy_selected_to_all() {
  torch::NoGradGuard no_grad;
  const auto& source = norms_.at(selected_);
  for (size_t i = 0; i < norms_.size(); ++i) {
    if (i == selected_) continue;
    auto& n = norms_[i];
    n->weight.copy_(source->weight);
    n->bias.copy_(source->bias);
    n->running_mean.copy_(source->running_mean);
    n->running_var.copy_(source->running_var);
    n->num_batches_tracked.copy_(source->num_batches_tracked);
  }
}

void SwitchableBatchNorm2dImpl::set_capture(bool capture) {
  capture_ = capture;
  if (!capture) captured_ = torch::Tensor();
}

torch::Tensor SwitchableBatchNorm2dImpl::forward(const torch::Tensor& x) {
  auto out = norms_.at(selected_)->forward(x);
  if (capture_) captured_ = out;
  return out;
}

// ---------------------------------------------------------------- layers

OneShotConv2dImpl::OneShotConv2dImpl(OneShotConv2dOptions options_) : options(std::move(options_)) {
  reset();
}

void OneShotConv2dImpl::reset() {
  const auto& o = options;
  DIFFQ_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.kernel_size() > 0 && o.stride() > 0 &&
                  o.padding() >= 0 && o.dilation() > 0 && o.groups() > 0 &&
                  o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
              "bad convolution options: ", o.in_channels(), " -> ", o.out_channels(), " channels, kernel ",
              o.kernel_size(), ", groups ", o.groups());
  act = register_module("act", ActivationQuantizer(ActivationQuantizerOptions()
                                                       .candidates(o.activation_candidates())
                                                       .is_signed(o.signed_input())));
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(),
                                                                            o.kernel_size())
                                                       .stride(o.stride())
                                                       .padding(o.padding())
                                                       .dilation(o.dilation())
                                                       .groups(o.groups())
                                                       .bias(o.bias())));
  if (o.batch_norm()) {
    bn = register_module("bn", SwitchableBatchNorm2d(SwitchableBatchNormOptions(o.out_channels())
                                                         .weight_candidates(o.weight_candidates())
                                                         .activation_candidates(o.activation_candidates())
                                                         .by_weight_bits(o.bn_by_weight_bits())));
  }
}

torch::Tensor OneShotConv2dImpl::forward(const torch::Tensor& x) {
  auto y = conv->forward(act->forward(x));
  return bn ? bn->forward(y) : y;
}

OneShotLinearImpl::OneShotLinearImpl(OneShotLinearOptions options_) : options(std::move(options_)) { reset(); }

void OneShotLinearImpl::reset() {
  DIFFQ_CHECK(options.in_features() > 0 && options.out_features() > 0, "bad linear options: ",
              options.in_features(), " -> ", options.out_features(), " features");
  act = register_module("act", ActivationQuantizer(ActivationQuantizerOptions()
                                                       .candidates(options.activation_candidates())
                                                       .is_signed(options.signed_input())));
  linear = register_module(
      "linear", torch::nn::Linear(torch::nn::LinearOptions(options.in_features(), options.out_features())
                                      .bias(options.bias())));
}

torch::Tensor OneShotLinearImpl::forward(const torch::Tensor& x) { return linear->forward(act->forward(x)); }

}  // namespace oneshot
}  // namespace diffq
