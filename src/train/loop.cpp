// The training library's Trainer and epoch loop (see include/diffq/train/loop.h).
#include "diffq/train/loop.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "diffq/allocator.h"
#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/train/experiment.h"
#include "diffq/train/tasks.h"
#include "seeds.h"

namespace diffq {
namespace train {

const char* schedule_name(Schedule schedule) {
  return schedule == Schedule::kCosine ? "cosine" : "constant";
}

Schedule parse_schedule(const std::string& name) {
  for (auto s : {Schedule::kCosine, Schedule::kConstant})
    if (name == schedule_name(s)) return s;
  throw Error("unknown schedule '" + name + "' (cosine or constant)");
}

StepResult SinglePassStep::compute_gradients(Trainer& trainer, const Batch& batch) {
  std::unique_ptr<TrainingStep> scope;
  if (trainer.quantizer()) scope.reset(new TrainingStep(trainer.quantizer()->training_step()));
  auto outputs = trainer.model().forward(batch.inputs);
  auto loss = trainer.loss(outputs, batch.targets);
  auto penalty = trainer.penalty();
  (penalty.defined() ? loss + penalty : loss).backward();
  if (scope) scope->finish();
  return {outputs.detach(), loss.detach()};
}

namespace {

// Distinct tensors of a model, in registration order.
std::vector<torch::Tensor> distinct_parameters(const ModelRef& model) {
  std::vector<torch::Tensor> out;
  std::vector<const void*> seen;
  for (const auto& p : model.parameters()) {
    const void* key = p.tensor.unsafeGetTensorImpl();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    out.push_back(p.tensor);
  }
  return out;
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

}  // namespace

Trainer::Trainer(ModelHandle model, TrainerOptions options)
    : model_(std::move(model)), options_(std::move(options)), method_(&find_method(options_.method())) {
  DIFFQ_CHECK(options_.lr() > 0, "the learning rate must be positive, not ", options_.lr());
  DIFFQ_CHECK(options_.clip() >= 0, "the clipping norm must be >= 0, not ", options_.clip());
  if (!options_.loss()) options_.loss(task_loss);
  if (options_.keep_freed_memory()) keep_freed_memory();
  auto& mo = options_.method_options();
  if (mo.bits_lr <= 0) mo.bits_lr = method_->default_own_lr(options_.lr());
  parameters_ = distinct_parameters(model_.ref);
  model_parameter_count_ = parameters_.size();
  optimizer_ = std::make_unique<torch::optim::Adam>(
      parameters_, torch::optim::AdamOptions(options_.lr()).weight_decay(options_.weight_decay()));
  if (method_->make) quantizer_ = method_->make(model_.ref, mo, options_.seed());
  if (quantizer_ && !quantizer_->parameters().empty()) {
    own_optimizer_ = quantizer_->make_optimizer(mo.bits_lr);
    for (const auto& t : quantizer_->parameters()) parameters_.push_back(t);
  }
  if (method_->make_step) {
    strategy_ = method_->make_step(mo, options_.seed());
  } else {
    strategy_ = std::make_unique<SinglePassStep>();
  }
  lambda_ = mo.penalty;
  init_size_target();
}

Trainer::~Trainer() = default;

void Trainer::set_step_strategy(std::unique_ptr<StepStrategy> strategy) {
  DIFFQ_CHECK(strategy != nullptr, "the step strategy must not be null");
  strategy_ = std::move(strategy);
}

void Trainer::add_gradient_hook(GradientHook hook) { hooks_.push_back(std::move(hook)); }

torch::Tensor Trainer::loss(const torch::Tensor& outputs, const torch::Tensor& targets) const {
  return options_.loss()(outputs, targets);
}

torch::Tensor Trainer::penalty() const {
  if (!method_->penalized || !quantizer_) return {};
  return lambda_ * quantizer_->model_size();
}

double Trainer::learning_rate() const {
  const int64_t total = options_.total_steps();
  if (options_.schedule() == Schedule::kConstant || total <= 0) return options_.lr();
  return options_.lr() * 0.5 * (1.0 + std::cos(M_PI * double(global_step_) / double(total)));
}

StepResult Trainer::step(const Batch& batch) {
  DIFFQ_CHECK(batch.share > 0 && batch.share <= 1, "the batch share must be in (0, 1], not ", batch.share);
  torch::manual_seed(derive_seed(options_.seed(), uint64_t(global_step_), Stream::kGlobal));
  batch_share_ = batch.share;
  model_.set_training(true);
  set_lr(*optimizer_, learning_rate());
  freeze_bits_if_due(/*shift=*/true);
  // Gradients start undefined (PyTorch's zero_grad(set_to_none=True)): a
  // tensor no pass reaches in this step (a BatchNorm of a bit pair no path
  // ran) is left alone by Adam, instead of being moved by its momentum on a
  // zero gradient; a resumed run, whose gradients start undefined, then
  // continues exactly.
  for (auto& p : parameters_) p.mutable_grad() = torch::Tensor();
  StepResult result = strategy_->compute_gradients(*this, batch);
  DIFFQ_CHECK(std::isfinite(result.loss.item<double>()), "the training loss is not finite at step ",
              global_step_, " (try a lower learning rate)");
  for (const auto& hook : hooks_) hook(parameters_);
  strategy_->finish_gradients(*this);
  if (options_.clip() > 0) {
    std::vector<torch::Tensor> weights(parameters_.begin(), parameters_.begin() + long(model_parameter_count_));
    torch::nn::utils::clip_grad_norm_(weights, options_.clip());
  }
  update_size_penalty();
  optimizer_->step();
  if (own_optimizer_ && !bits_frozen()) own_optimizer_->step();
  ++global_step_;
  freeze_bits_if_due(/*shift=*/true);  // after the last step in target-size mode
  return result;
}

void Trainer::fit(const torch::Tensor& inputs, const torch::Tensor& targets, int epochs, int64_t batch_size) {
  DIFFQ_CHECK(inputs.size(0) == targets.size(0), "fit: ", inputs.size(0), " inputs but ", targets.size(0),
              " targets");
  DIFFQ_CHECK(epochs >= 1 && batch_size >= 1, "fit: epochs and batch size must be positive");
  LoopPlan plan{inputs.size(0), batch_size, epochs};
  if (options_.total_steps() == 0) options_.total_steps(global_step_ + plan.total_steps());
  Position position;
  position.global_step = global_step_;
  LoopHooks hooks;
  hooks.batch = [&](const torch::Tensor& index, const Position&) {
    return Batch{inputs.index_select(0, index), targets.index_select(0, index)};
  };
  run_epochs(*this, plan, position, hooks);
}

void Trainer::resume_at(int64_t global_step) {
  global_step_ = global_step;
  if (!quantizer_) return;
  if (method_->replay_steps_on_resume) {
    for (int64_t i = quantizer_->steps(); i < global_step; ++i) quantizer_->training_step().finish();
    optimizer_->zero_grad();
    if (own_optimizer_) own_optimizer_->zero_grad();
  } else {
    quantizer_->set_steps(global_step);
  }
  freeze_bits_if_due(/*shift=*/false);  // the checkpoint holds the shifted bits
}

double Trainer::mean_bits() const {
  if (auto* d = dynamic_cast<DiffQuantizer*>(quantizer_.get())) return d->mean_bits();
  if (static_mean_bits_ < 0) static_mean_bits_ = quantized_state().mean_bits();
  return static_mean_bits_;
}

QuantizedState Trainer::quantized_state() const {
  return quantizer_ ? quantizer_->get_quantized_state() : float_state(model_.ref);
}

uint64_t Trainer::save(const std::string& path, const SaveOptions& options) const {
  diffq::save(quantized_state(), path, options);
  return std::filesystem::file_size(path);
}

bool run_epochs(Trainer& trainer, const LoopPlan& plan, Position& pos, const LoopHooks& hooks) {
  DIFFQ_CHECK(plan.examples >= 1, "no training example");
  DIFFQ_CHECK(plan.world_size >= 1 && plan.rank >= 0 && plan.rank < plan.world_size, "rank ", plan.rank,
              " is not in a world of ", plan.world_size);
  DIFFQ_CHECK(plan.examples >= plan.world_size, plan.examples, " training examples cannot feed ", plan.world_size,
              " processes");
  DIFFQ_CHECK(hooks.batch != nullptr, "run_epochs needs a batch function");
  const int64_t steps = plan.steps_per_epoch();
  const auto stop = [&] { return hooks.should_stop && hooks.should_stop(pos); };
  for (; pos.epoch < plan.epochs; ++pos.epoch, pos.step = 0) {
    const auto order = torch::randperm(
        plan.examples, seeded_generator(derive_seed(trainer.options().seed(), uint64_t(pos.epoch), Stream::kOrder)),
        torch::kInt64);
    if (hooks.start_epoch) hooks.start_epoch(pos);
    while (pos.step < steps) {
      const int64_t b0 = pos.step * plan.global_batch(), n = std::min(plan.examples - b0, plan.global_batch());
      const int64_t s0 = b0 + n * plan.rank / plan.world_size, s1 = b0 + n * (plan.rank + 1) / plan.world_size;
      Batch batch = hooks.batch(order.slice(0, s0, s1), pos);
      batch.share = double(s1 - s0) / double(n);
      const auto result = trainer.step(batch);
      ++pos.step;
      ++pos.global_step;
      if (hooks.after_step) hooks.after_step(pos, result);
      if (pos.step < steps && stop()) return false;
    }
    if (hooks.end_epoch) hooks.end_epoch(pos);
    if (pos.epoch + 1 < plan.epochs && stop()) {
      ++pos.epoch;
      pos.step = 0;
      return false;
    }
  }
  return true;
}

}  // namespace train
}  // namespace diffq
