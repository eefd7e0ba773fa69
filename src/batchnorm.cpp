// Re-estimating BatchNorm running statistics (cumulative average).
#include "diffq/batchnorm.h"

#include <string>

#include <torch/script.h>
#include <torch/torch.h>

#include "diffq/error.h"

namespace diffq {

namespace {

// One BatchNorm layer: its statistics and how its update is steered.
struct Norm {
  std::string name;
  torch::Tensor running_mean, running_var, num_batches_tracked;  // the last may be undefined
  // Settable momentum (C++ option or TorchScript attribute): 1/k on batch k.
  std::function<void(double)> set_momentum;
  std::function<void()> restore_momentum;
  // Puts the layer (alone) in train mode.
  std::function<void()> to_train;
  // Otherwise (momentum a TorchScript class constant), probe mode: the
  // statistics are zeroed before each batch, so that after it they hold
  // `factor` times the batch statistics, which are read back and averaged.
  double factor = 0;
  torch::Tensor sum_mean, sum_var;  // float64 sums of the batch statistics
};

// Saved values of a layer's statistics, to put back on error.
struct Saved {
  torch::Tensor mean, var, count;
};

template <typename Impl>
bool add_nn_norm(const std::string& name, torch::nn::Module* module, std::vector<Norm>& out) {
  auto* bn = dynamic_cast<Impl*>(module);
  if (bn == nullptr) return false;
  if (!bn->options.track_running_stats() || !bn->running_mean.defined()) return true;
  Norm norm;
  norm.name = name;
  norm.running_mean = bn->running_mean;
  norm.running_var = bn->running_var;
  norm.num_batches_tracked = bn->num_batches_tracked;
  const c10::optional<double> momentum = bn->options.momentum();
  norm.set_momentum = [bn](double m) { bn->options.momentum(m); };
  norm.restore_momentum = [bn, momentum] { bn->options.momentum(momentum); };
  norm.to_train = [bn] { bn->train(true); };
  out.push_back(std::move(norm));
  return true;
}

// The model itself then its submodules, depth first. Raw pointers: the
// model need not be held by a shared_ptr (include_self would require it).
std::vector<std::pair<std::string, torch::nn::Module*>> nn_modules(torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::nn::Module*>> out = {{"<root>", &model}};
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    out.push_back({item.key(), item.value().get()});
  }
  return out;
}

std::vector<Norm> nn_norms(torch::nn::Module& model) {
  std::vector<Norm> out;
  for (const auto& item : nn_modules(model)) {
    add_nn_norm<torch::nn::BatchNorm1dImpl>(item.first, item.second, out) ||
        add_nn_norm<torch::nn::BatchNorm2dImpl>(item.first, item.second, out) ||
        add_nn_norm<torch::nn::BatchNorm3dImpl>(item.first, item.second, out);
  }
  return out;
}

bool is_tensor_buffer(const torch::jit::Module& m, const std::string& name) {
  const auto& type = m.type();
  auto slot = type->findAttributeSlot(name);
  return slot && type->is_buffer(*slot) && m.attr(name).isTensor();
}

std::vector<Norm> script_norms(torch::jit::Module& model) {
  std::vector<Norm> out;
  for (const auto& item : model.named_modules()) {
    torch::jit::Module m = item.value;
    if (!is_tensor_buffer(m, "running_mean") || !is_tensor_buffer(m, "running_var")) continue;
    const std::string shown = item.name.empty() ? "<root>" : item.name;
    Norm norm;
    norm.name = shown;
    norm.running_mean = m.attr("running_mean").toTensor();
    norm.running_var = m.attr("running_var").toTensor();
    if (is_tensor_buffer(m, "num_batches_tracked")) {
      norm.num_batches_tracked = m.attr("num_batches_tracked").toTensor();
    }
    if (auto slot = m.type()->findAttributeSlot("momentum")) {
      const auto type = m.type()->getAttribute(*slot);
      DIFFQ_CHECK(c10::FloatType::get()->isSubtypeOf(*type),
                  "recalibrate_batchnorm: the "
                  "'momentum' attribute of TorchScript module '",
                  shown, "' has type ", type->repr_str(), "; float or Optional[float] is needed");
      const c10::IValue momentum = m.attr("momentum");
      norm.set_momentum = [m](double value) mutable { m.setattr("momentum", value); };
      norm.restore_momentum = [m, momentum]() mutable { m.setattr("momentum", momentum); };
    } else {
      // torch.nn.BatchNorm scripted from Python: momentum is a class
      // constant (inlined in the code). Its forward updates with factor
      // momentum, or 1/num_batches_tracked when momentum is None.
      auto constant = m.type()->findConstant("momentum");
      DIFFQ_CHECK(constant.has_value(), "recalibrate_batchnorm: TorchScript module '", shown,
                  "' has running statistics but no 'momentum' attribute or constant; its "
                  "update rule is unknown");
      if (constant->isNone()) {
        DIFFQ_CHECK(norm.num_batches_tracked.defined(),
                    "recalibrate_batchnorm: TorchScript "
                    "module '",
                    shown, "' has momentum None but no num_batches_tracked buffer");
        norm.factor = 1.0;  // 1 / num_batches_tracked, from 0 to 1 in the forward
      } else {
        DIFFQ_CHECK(constant->isDouble() && constant->toDouble() > 0 && constant->toDouble() <= 1,
                    "recalibrate_batchnorm: the momentum constant of TorchScript module '", shown,
                    "' is ", *constant, "; a float in (0, 1] or None is needed");
        norm.factor = constant->toDouble();
      }
      norm.restore_momentum = [] {};
    }
    norm.to_train = [m]() mutable {
      if (m.type()->hasAttribute("training")) m.setattr("training", true);
    };
    out.push_back(std::move(norm));
  }
  return out;
}

// Train/eval flags of every module, to set and put back.
class Modes {
 public:
  explicit Modes(const ModelRef& model) {
    if (auto* nn = model.nn_module()) {
      for (const auto& item : nn_modules(*nn))
        nn_.push_back({item.second, item.second->is_training()});
    } else {
      for (const auto& m : model.script_module()->modules()) {
        if (m.type()->hasAttribute("training")) script_.push_back({m, m.is_training()});
      }
    }
  }
  // Every module in eval mode, then the BatchNorm layers in train mode.
  void calibration(const std::vector<Norm>& norms) {
    for (auto& entry : nn_) entry.first->train(false);
    for (auto& entry : script_) entry.first.setattr("training", false);
    for (const auto& norm : norms) norm.to_train();
  }
  // Puts every flag back (pre-order, so that a parent's recursive train()
  // cannot override a child's own flag).
  void restore() {
    for (auto& entry : nn_) entry.first->train(entry.second);
    for (auto& entry : script_) entry.first.setattr("training", entry.second);
  }

 private:
  std::vector<std::pair<torch::nn::Module*, bool>> nn_;
  std::vector<std::pair<torch::jit::Module, bool>> script_;
};

}  // namespace

int64_t recalibrate_batchnorm(const ModelRef& model, const std::vector<torch::Tensor>& batches,
                              const BatchForward& forward) {
  std::vector<Norm> norms = model.nn_module() != nullptr ? nn_norms(*model.nn_module())
                                                         : script_norms(*model.script_module());
  if (norms.empty()) return 0;
  DIFFQ_CHECK(!batches.empty(), "recalibrate_batchnorm: no batches given (the model has ",
              norms.size(), " BatchNorm layers, starting with '", norms.front().name, "')");
  DIFFQ_CHECK(static_cast<bool>(forward), "recalibrate_batchnorm: no forward function given");
  torch::NoGradGuard no_grad;
  std::vector<Saved> saved;
  for (const auto& norm : norms) {
    saved.push_back(
        {norm.running_mean.clone(), norm.running_var.clone(),
         norm.num_batches_tracked.defined() ? norm.num_batches_tracked.clone() : torch::Tensor()});
  }
  Modes modes(model);
  try {
    modes.calibration(norms);
    for (auto& norm : norms) {
      norm.running_mean.zero_();
      norm.running_var.fill_(1);
      if (norm.num_batches_tracked.defined()) norm.num_batches_tracked.zero_();
    }
    // Momentum 1/k on batch k: running_k = (1 - 1/k) running_(k-1) + s_k / k,
    // the mean of s_1..s_k (the first batch replaces the reset values).
    // Probe mode: zero statistics before the batch, s_k = running / factor.
    for (size_t k = 0; k < batches.size(); ++k) {
      for (auto& norm : norms) {
        if (norm.set_momentum) {
          norm.set_momentum(1.0 / static_cast<double>(k + 1));
        } else {
          norm.running_mean.zero_();
          norm.running_var.zero_();
          if (norm.num_batches_tracked.defined()) norm.num_batches_tracked.zero_();
        }
      }
      forward(batches[k]);
      for (auto& norm : norms) {
        if (norm.set_momentum) continue;
        auto mean = norm.running_mean.to(torch::kFloat64) / norm.factor;
        auto var = norm.running_var.to(torch::kFloat64) / norm.factor;
        norm.sum_mean = norm.sum_mean.defined() ? norm.sum_mean + mean : mean;
        norm.sum_var = norm.sum_var.defined() ? norm.sum_var + var : var;
      }
    }
    const double n = static_cast<double>(batches.size());
    for (auto& norm : norms) {
      if (norm.set_momentum) continue;
      norm.running_mean.copy_(norm.sum_mean / n);
      norm.running_var.copy_(norm.sum_var / n);
      if (norm.num_batches_tracked.defined())
        norm.num_batches_tracked.fill_(static_cast<int64_t>(batches.size()));
    }
  } catch (...) {
    for (size_t i = 0; i < norms.size(); ++i) {
      norms[i].restore_momentum();
      norms[i].running_mean.copy_(saved[i].mean);
      norms[i].running_var.copy_(saved[i].var);
      if (saved[i].count.defined()) norms[i].num_batches_tracked.copy_(saved[i].count);
    }
    modes.restore();
    throw;
  }
  for (auto& norm : norms) norm.restore_momentum();
  modes.restore();
  return static_cast<int64_t>(norms.size());
}

int64_t recalibrate_batchnorm(torch::jit::Module& model,
                              const std::vector<torch::Tensor>& batches) {
  return recalibrate_batchnorm(ModelRef(model), batches,
                               [&model](const torch::Tensor& batch) { model.forward({batch}); });
}

}  // namespace diffq
