// The quantizer framework: discovery, training steps, evaluation scopes,
// gradient hooks, sizes and optimizer helpers.
#include "diffq/quantizer.h"


#include <cmath>
#include <unordered_map>

#include <torch/torch.h>

#include "buffer_state.h"
#include "diffq/error.h"
#include "name_match.h"
#include "registry.h"
#include "tensor_convert.h"

namespace diffq {

Quantizer::Quantizer(const ModelRef& model, const DiscoveryOptions& options, std::string method)
    : discovery_(options), method_(std::move(method)) {
  DIFFQ_CHECK(std::isfinite(options.min_size()) && options.min_size() >= 0,
              "min_size must be a non-negative number of MB, got ", options.min_size());
  const double threshold_d = std::floor(options.min_size() * 1048576.0 / 4.0);
  const int64_t threshold = static_cast<int64_t>(threshold_d);
  // Where the first occurrence of each tensor went: slot (true) or leftover.
  std::unordered_map<const void*, std::pair<bool, size_t>> first;
  std::vector<std::string> claimed_names;
  for (auto& param : model.parameters()) {
    const auto& t = param.tensor;
    DIFFQ_CHECK(t.defined(), "parameter '", param.name, "' is undefined");
    DIFFQ_CHECK(t.is_floating_point(), "parameter '", param.name, "' has dtype ",
                t.scalar_type(), "; only floating-point parameters can be quantized");
    to_dtype(t.scalar_type(), param.name);  // rejects unsupported float types early
    const void* impl = t.unsafeGetTensorImpl();
    auto seen = first.find(impl);
    if (seen != first.end()) {
      const bool is_slot = seen->second.first;
      const size_t index = seen->second.second;
      if (options.detect_bound()) {
        if (is_slot) {
          slots_[index].aliases.push_back(param.name);
        } else {
          leftovers_[index].aliases.push_back(param.name);
        }
        continue;
      }
      if (is_slot) {
        detail::Slot slot;
        slot.name = param.name;
        slot.tensor = t;
        slot.storage_index = slots_[index].storage_index;
        slots_.push_back(std::move(slot));
        order_.push_back({true, slots_.size() - 1});
      } else {
        detail::Leftover leftover = leftovers_[index];
        leftover.name = param.name;
        leftover.aliases.clear();
        leftovers_.push_back(std::move(leftover));
        order_.push_back({false, leftovers_.size() - 1});
      }
      continue;
    }
    registered_.push_back(impl);
    claimed_names.push_back(param.name);
    const bool quantize = t.numel() > threshold && !name_matches_any(options.exclude(), param.name);
    if (quantize) {
      detail::Slot slot;
      slot.name = param.name;
      slot.tensor = t;
      slot.storage_index = slots_.size();
      first[impl] = {true, slots_.size()};
      slots_.push_back(std::move(slot));
      order_.push_back({true, slots_.size() - 1});
    } else {
      detail::Leftover leftover;
      leftover.name = param.name;
      leftover.tensor = t;
      leftover.float16 = options.float16();
      first[impl] = {false, leftovers_.size()};
      leftovers_.push_back(std::move(leftover));
      order_.push_back({false, leftovers_.size() - 1});
    }
  }
  buffers_ = detail::collect_buffers(model);
  detail::claim_tensors(registered_, claimed_names);
  active_slot_.assign(slots_.size(), 0);
}

Quantizer::~Quantizer() {
  // Never leave the model holding noisy or quantized data.
  for (auto& slot : slots_) {
    if (slot.latent.defined()) {
      try {
        put_back(slot);
      } catch (...) {
      }
    }
  }
  for (const auto& hook : hooks_) {
    try {
      slots_[hook.first].tensor.remove_hook(hook.second);
    } catch (...) {
    }
  }
  detail::release_tensors(registered_);
}

void Quantizer::install_hooks() {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].storage_index != i) continue;
    if (!slots_[i].tensor.requires_grad()) continue;
    const unsigned handle = slots_[i].tensor.register_hook(
        [this, i](const torch::Tensor& grad) { return on_gradient(i, grad); });
    hooks_.push_back({i, handle});
  }
}

torch::Tensor Quantizer::new_buffer(const torch::Tensor& like) {
  return torch::empty_like(like, torch::MemoryFormat::Contiguous);
}

torch::Tensor Quantizer::gradient_buffer(const detail::Slot& slot, const torch::Tensor& like) {
  const auto& installed = slot.installed;
  const bool free = installed.defined() && installed.is_contiguous() && installed.sizes() == like.sizes() &&
                    installed.scalar_type() == like.scalar_type() && installed.device() == like.device() &&
                    installed.storage_offset() == 0 && installed.use_count() == 1 &&
                    // the installed tensor and the parameter holding its data, nothing else
                    installed.storage().use_count() == 2 && slot.tensor.storage().is_alias_of(installed.storage());
  return free ? installed : new_buffer(like);
}

double Quantizer::leftover_bits() const {
  double bits = 0;
  for (const auto& leftover : leftovers_) {
    bits += (leftover.float16 ? 16.0 : 32.0) * static_cast<double>(leftover.tensor.numel());
  }
  return bits;
}

double Quantizer::float_model_size() const {
  double bits = 0;
  std::unordered_map<const void*, bool> seen;
  for (const auto& slot : slots_) {
    if (seen.emplace(slot.tensor.unsafeGetTensorImpl(), true).second) {
      bits += 32.0 * static_cast<double>(slot.tensor.numel());
    }
  }
  for (const auto& leftover : leftovers_) {
    if (seen.emplace(leftover.tensor.unsafeGetTensorImpl(), true).second) {
      bits += 32.0 * static_cast<double>(leftover.tensor.numel());
    }
  }
  return bits / 8.0 / 1048576.0;
}

void Quantizer::set_steps(int64_t steps) {
  DIFFQ_CHECK(steps >= 0, "the step counter cannot be negative, got ", steps);
  DIFFQ_CHECK(mode_ == Mode::kIdle, "set_steps() needs no active step or scope");
  steps_ = steps;
}

// ------------------------------------------------------------ training step

TrainingStep Quantizer::training_step() {
  DIFFQ_CHECK(mode_ == Mode::kIdle,
              mode_ == Mode::kTraining
                  ? "a training step is already active: finish() it (or let it go out of scope) "
                    "before starting another"
                  : "an evaluation scope is active: finish() it before starting a training step");
  // Tied tensors without detection: one occurrence drives each step, in turn.
  std::vector<std::vector<size_t>> members(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) members[slots_[i].storage_index].push_back(i);
  std::vector<size_t> order;  // the active slot of each tensor, in slot order
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (members[s].empty()) continue;
    const size_t active = members[s][static_cast<size_t>(steps_) % members[s].size()];
    active_slot_[s] = active;
    order.push_back(active);
  }
  std::vector<size_t> installed;
  try {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t active = order[k];
      next_training_slot_ = k + 1 < order.size() ? &slots_[order[k + 1]] : nullptr;
      auto& slot = slots_[active];
      slot.received_gradient = false;
      slot.latent = slot.tensor.variable_data();
      auto data = training_data(slot);
      if (!data.defined()) {
        slot.latent = torch::Tensor();
        continue;
      }
      slot.installed = data;
      slot.tensor.set_data(data);
      slot.waiting_for_gradient = true;
      installed.push_back(active);
    }
  } catch (...) {
    next_training_slot_ = nullptr;
    for (size_t index : installed) put_back(slots_[index]);
    for (auto& slot : slots_) slot.latent = torch::Tensor();
    throw;
  }
  next_training_slot_ = nullptr;
  mode_ = Mode::kTraining;
  return TrainingStep(this);
}

torch::Tensor Quantizer::on_gradient(size_t storage_index, const torch::Tensor& grad) {
  if (mode_ != Mode::kTraining) return torch::Tensor();
  auto& slot = slots_[active_slot_[storage_index]];
  if (!slot.waiting_for_gradient || !grad.defined()) return torch::Tensor();
  torch::Tensor full;
  {
    torch::NoGradGuard no_grad;
    full = backward(slot, grad);
  }
  put_back(slot);
  slot.received_gradient = true;
  return full;
}

void Quantizer::put_back(detail::Slot& slot) {
  if (slot.latent.defined()) slot.tensor.set_data(slot.latent);
  slot.latent = torch::Tensor();
  slot.installed = torch::Tensor();
  slot.waiting_for_gradient = false;
}

void Quantizer::end_training_step() {
  if (mode_ != Mode::kTraining) return;
  for (auto& slot : slots_) {
    if (slot.waiting_for_gradient) {
      put_back(slot);
      on_unused(slot);
    }
  }
  ++steps_;
  mode_ = Mode::kIdle;
}

void TrainingStep::finish() {
  if (quantizer_ != nullptr) {
    Quantizer* q = quantizer_;
    quantizer_ = nullptr;
    q->end_training_step();
  }
}

TrainingStep::~TrainingStep() { finish(); }

TrainingStep::TrainingStep(TrainingStep&& other) noexcept : quantizer_(other.quantizer_) {
  other.quantizer_ = nullptr;
}

// ------------------------------------------------------------ evaluation

QuantizedEvaluation Quantizer::quantized_evaluation() {
  DIFFQ_CHECK(mode_ == Mode::kIdle,
              mode_ == Mode::kTraining
                  ? "a training step is active: finish() it before evaluating"
                  : "an evaluation scope is already active");
  std::vector<size_t> installed;
  try {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].storage_index != i) continue;  // first occurrence drives the tensor
      auto& slot = slots_[i];
      auto data = quantized_data(slot);
      slot.latent = slot.tensor.variable_data();
      slot.tensor.set_data(data);
      installed.push_back(i);
    }
  } catch (...) {
    for (size_t index : installed) put_back(slots_[index]);
    throw;
  }
  mode_ = Mode::kEvaluation;
  return QuantizedEvaluation(this);
}

void Quantizer::end_evaluation() {
  if (mode_ != Mode::kEvaluation) return;
  for (auto& slot : slots_) put_back(slot);
  mode_ = Mode::kIdle;
}

void QuantizedEvaluation::finish() {
  if (quantizer_ != nullptr) {
    Quantizer* q = quantizer_;
    quantizer_ = nullptr;
    q->end_evaluation();
  }
}

QuantizedEvaluation::~QuantizedEvaluation() { finish(); }

QuantizedEvaluation::QuantizedEvaluation(QuantizedEvaluation&& other) noexcept
    : quantizer_(other.quantizer_) {
  other.quantizer_ = nullptr;
}

// ------------------------------------------------------------ state

QuantizedState Quantizer::get_quantized_state() const {
  DIFFQ_CHECK(mode_ == Mode::kIdle,
              "get_quantized_state() needs the float weights: finish the active step or scope");
  QuantizedState state;
  state.method = method_;
  state.options = option_map();
  torch::NoGradGuard no_grad;
  for (const auto& entry : order_) {
    if (entry.first) {
      const auto& slot = slots_[entry.second];
      TensorRecord record = quantized_record(slot);
      record.name = slot.name;
      record.aliases = slot.aliases;
      record.shape = slot.tensor.sizes().vec();
      record.dtype = to_dtype(slot.tensor.scalar_type(), slot.name);
      state.tensors.push_back(std::move(record));
    } else {
      const auto& leftover = leftovers_[entry.second];
      state.tensors.push_back(float_record(leftover.name, leftover.tensor, leftover.float16));
      state.tensors.back().aliases = leftover.aliases;
    }
  }
  for (const auto& buffer : buffers_) {
    state.tensors.push_back(detail::buffer_record(buffer, discovery_.float16()));
  }
  return state;
}

// ------------------------------------------------------------ listings

std::vector<torch::Tensor> Quantizer::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& slot : slots_) {
    if (slot.own.defined()) out.push_back(slot.own);
  }
  return out;
}

std::vector<std::string> Quantizer::quantized_names() const {
  std::vector<std::string> out;
  for (const auto& slot : slots_) out.push_back(slot.name);
  return out;
}

std::vector<std::string> Quantizer::float_names() const {
  std::vector<std::string> out;
  for (const auto& leftover : leftovers_) out.push_back(leftover.name);
  return out;
}

std::vector<std::string> Quantizer::buffer_names() const {
  std::vector<std::string> out;
  for (const auto& buffer : buffers_) out.push_back(buffer.name);
  return out;
}

// ------------------------------------------------------------ optimizers

void Quantizer::add_to_optimizer(torch::optim::Optimizer& optimizer, double lr) const {
  DIFFQ_CHECK(std::isfinite(lr) && lr > 0, "the learning rate must be positive, got ", lr);
  const auto own = parameters();
  if (own.empty()) return;
  std::unordered_map<const void*, bool> mine;
  for (const auto& t : own) mine[t.unsafeGetTensorImpl()] = true;
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (const auto& p : groups[g].params()) {
      DIFFQ_CHECK(mine.count(p.unsafeGetTensorImpl()) == 0,
                  "the quantizer's parameters are already in the optimizer (parameter group ", g,
                  "); they need their own group with weight decay 0: add them only through "
                  "add_to_optimizer()");
    }
  }
  std::unique_ptr<torch::optim::OptimizerOptions> options = optimizer.defaults().clone();
  options->set_lr(lr);
  if (auto* o = dynamic_cast<torch::optim::AdamOptions*>(options.get())) {
    o->weight_decay(0);
  } else if (auto* o = dynamic_cast<torch::optim::AdamWOptions*>(options.get())) {
    o->weight_decay(0);
  } else if (auto* o = dynamic_cast<torch::optim::SGDOptions*>(options.get())) {
    o->weight_decay(0);
  } else if (auto* o = dynamic_cast<torch::optim::RMSpropOptions*>(options.get())) {
    o->weight_decay(0);
  } else if (auto* o = dynamic_cast<torch::optim::AdagradOptions*>(options.get())) {
    o->weight_decay(0);
  } else {
    throw Error(
        "add_to_optimizer: unsupported optimizer type (Adam, AdamW, SGD, RMSprop, Adagrad "
        "are supported); use make_optimizer() for a separate Adam");
  }
  optimizer.add_param_group(torch::optim::OptimizerParamGroup(own, std::move(options)));
}

std::unique_ptr<torch::optim::Optimizer> Quantizer::make_optimizer(double lr) const {
  DIFFQ_CHECK(std::isfinite(lr) && lr > 0, "the learning rate must be positive, got ", lr);
  const auto own = parameters();
  DIFFQ_CHECK(!own.empty(), "this quantizer (", method_, ") has no trainable parameters");
  return std::make_unique<torch::optim::Adam>(own, torch::optim::AdamOptions(lr).weight_decay(0));
}

}  // namespace diffq
