// The search of one-shot mixed precision on a coupled network.
#include "diffq/oneshot/search_model.h"

#include <algorithm>

#include <torch/torch.h>

#include "diffq/error.h"

namespace diffq {
namespace oneshot {

namespace {

// Every BatchNorm2d of the model (switchable ones' children included).
std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> batch_norms(torch::nn::Module& model) {
  std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> out;
  for (const auto& m : model.modules(/*include_self=*/true))
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m)) out.push_back(bn);
  return out;
}

// The BatchNorm layers that run under the current configuration: the
// selected norm of each switchable BatchNorm and every plain BatchNorm2d.
std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> running_norms(torch::nn::Module& model) {
  std::vector<const void*> switchable_children;
  std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> out;
  for (const auto& m : model.modules(true)) {
    if (auto s = std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(m)) {
      for (const auto& n : s->norms()) switchable_children.push_back(n.ptr().get());
      out.push_back(s->selected_norm().ptr());
    }
  }
  for (auto& bn : batch_norms(model))
    if (std::find(switchable_children.begin(), switchable_children.end(), bn.get()) == switchable_children.end())
      out.push_back(bn);
  return out;
}

// Every module's train flag, restored on exit.
class ModeGuard {
 public:
  explicit ModeGuard(torch::nn::Module& model) {
    for (const auto& m : model.modules(true)) modes_.emplace_back(m, m->is_training());
  }
  ~ModeGuard() {
    for (auto& [m, training] : modes_) m->train(training);
  }
  // Eval everywhere, except BatchNorm layers in train mode.
  void batch_norm_only_training() {
    for (auto& [m, training] : modes_) {
      (void)training;
      const bool is_bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m) != nullptr ||
                         std::dynamic_pointer_cast<SwitchableBatchNorm2dImpl>(m) != nullptr;
      m->train(is_bn);  // train() recurses: the loop visits parents first, children after
    }
  }

 private:
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes_;
};

// Sets the momentum of `norms` for its lifetime; puts back each one's
// momentum (and, with `keep_counters`, its batch counter) on exit, error or not.
class MomentumGuard {
 public:
  MomentumGuard(std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> norms, c10::optional<double> momentum,
                bool keep_counters)
      : norms_(std::move(norms)) {
    for (auto& bn : norms_) {
      momentum_.push_back(bn->options.momentum());
      counters_.push_back(keep_counters && bn->num_batches_tracked.defined() ? bn->num_batches_tracked.clone()
                                                                             : torch::Tensor());
      bn->options.momentum(momentum);
    }
  }
  ~MomentumGuard() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < norms_.size(); ++i) {
      norms_[i]->options.momentum(momentum_[i]);
      if (counters_[i].defined()) norms_[i]->num_batches_tracked.copy_(counters_[i]);
    }
  }

 private:
  std::vector<std::shared_ptr<torch::nn::BatchNorm2dImpl>> norms_;
  std::vector<c10::optional<double>> momentum_;
  std::vector<torch::Tensor> counters_;
};

double error_of(const torch::Tensor& outputs, const torch::Tensor& targets, HeldOutError metric) {
  if (metric == HeldOutError::kSoft) {
    auto p = outputs.reshape({-1, outputs.size(-1)}).to(torch::kFloat64).softmax(1);
    auto truth = p.gather(1, targets.reshape({-1, 1}).to(torch::kInt64));
    return std::clamp(1.0 - truth.mean().item<double>(), 0.0, 1.0);
  }
  auto predicted = outputs.reshape({-1, outputs.size(-1)}).argmax(1);
  return 1.0 - predicted.eq(targets.reshape({-1})).to(torch::kFloat64).mean().item<double>();
}

}  // namespace

double batch_statistics_error(torch::nn::Module& model, OneShotQuantizer& quantizer, const Forward& forward,
                              const LabeledBatch& batch, HeldOutError metric) {
  DIFFQ_CHECK(batch.inputs.defined() && batch.targets.defined() && batch.inputs.size(0) > 1,
              "a held-out batch needs inputs, targets and at least 2 examples (batch statistics)");
  ModeGuard modes(model);
  modes.batch_norm_only_training();
  // Momentum 0 keeps the running statistics; the counters are put back.
  MomentumGuard keep(batch_norms(model), 0.0, /*keep_counters=*/true);
  auto scope = quantizer.quantized_evaluation();
  torch::NoGradGuard no_grad;
  const double error = error_of(forward(batch.inputs), batch.targets, metric);
  return error;
}

SearchResult search_model(torch::nn::Module& model, OneShotQuantizer& quantizer, const Forward& forward,
                          const std::vector<LabeledBatch>& held_out, const SearchOptions& options,
                          HeldOutError metric) {
  DIFFQ_CHECK(!held_out.empty(), "the search needs held-out batches");
  const auto layers = quantizer.layers();
  if (options.cost == CostKind::kBitOps) {
    for (const auto& l : layers)
      DIFFQ_CHECK(l.macs > 0, "layer '", l.name, "' has no measured MACs: run one forward of the model before a "
                  "BitOPs search (layers without an activation quantizer support size budgets only)");
  }
  const auto before = quantizer.config();
  auto evaluate = [&](const BitConfig& config, int64_t iteration) {
    quantizer.set_config(config);
    return batch_statistics_error(model, quantizer, forward, held_out[size_t(iteration) % held_out.size()], metric);
  };
  auto cost_of = [&](const BitConfig& config) { return cost(layers, config, options.cost); };
  SearchResult result;
  try {
    result = search(layers, evaluate, cost_of, options);
  } catch (...) {
    quantizer.set_config(before);
    throw;
  }
  quantizer.set_config(before);
  return result;
}

int64_t recalibrate_selected_batchnorm(torch::nn::Module& model, OneShotQuantizer& quantizer,
                                       const Forward& forward, const std::vector<torch::Tensor>& inputs) {
  auto norms = running_norms(model);
  if (norms.empty()) return 0;
  DIFFQ_CHECK(!inputs.empty(), "BatchNorm recalibration needs at least one batch");
  ModeGuard modes(model);
  modes.batch_norm_only_training();
  for (auto& bn : norms) bn->reset_running_stats();
  // No momentum: a cumulative average, 1 / batches seen.
  MomentumGuard cumulative(norms, c10::nullopt, /*keep_counters=*/false);
  auto scope = quantizer.quantized_evaluation();
  torch::NoGradGuard no_grad;
  for (const auto& x : inputs) forward(x);
  return static_cast<int64_t>(norms.size());
}

}  // namespace oneshot
}  // namespace diffq
