// The training step of one-shot mixed-precision quantization.
#include "diffq/train/oneshot_step.h"

#include <random>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/oneshot/schedule.h"

namespace diffq {
namespace train {

namespace {

oneshot::OneShotQuantizer& oneshot_quantizer(Trainer& trainer) {
  auto* q = dynamic_cast<oneshot::OneShotQuantizer*>(trainer.quantizer());
  DIFFQ_CHECK(q != nullptr, "the one-shot step needs the method 'oneshot', not '", trainer.method().name, "'");
  return *q;
}

// KL(teacher ‖ student), mean over the examples (rows of the last dimension).
torch::Tensor distillation_loss(const torch::Tensor& student, const torch::Tensor& teacher) {
  const int64_t classes = student.size(-1);
  auto s = torch::log_softmax(student.reshape({-1, classes}), -1);
  auto t = torch::softmax(teacher.reshape({-1, classes}), -1);
  return torch::nn::functional::kl_div(s, t, torch::nn::functional::KLDivFuncOptions().reduction(torch::kBatchMean));
}

}  // namespace

bool OneShotStep::schedule(Trainer& trainer, int64_t global_step, int64_t total_steps) {
  if (!options_.scheduler() || total_steps <= 0) return false;
  auto& q = oneshot_quantizer(trainer);
  const int64_t per_epoch = options_.steps_per_epoch() > 0 ? options_.steps_per_epoch()
                                                           : std::max<int64_t>(1, total_steps / 10);
  const auto plan = oneshot::SchedulePlan::for_budget(total_steps, per_epoch);
  if (!plan.due(global_step)) return false;
  const auto searchable = q.searchable_layers();
  const auto all_turbulence = q.turbulence();
  const auto all_floor = q.scheduler_floor();
  std::vector<std::vector<int>> full;
  std::vector<double> turbulence;
  std::vector<int> floor;
  for (size_t i : searchable) {
    full.push_back(q.full_weight_candidates(i));
    turbulence.push_back(all_turbulence[i]);
    floor.push_back(all_floor[i]);
  }
  const double ratio = oneshot::shrink_ratio(double(global_step) / double(total_steps));
  const auto candidates = oneshot::schedule_candidates(full, turbulence, ratio, floor);
  for (size_t k = 0; k < searchable.size(); ++k) q.set_weight_candidates(searchable[k], candidates[k]);
  return true;
}

StepResult OneShotStep::compute_gradients(Trainer& trainer, const Batch& batch) {
  auto& q = oneshot_quantizer(trainer);
  schedule(trainer, trainer.global_step(), trainer.options().total_steps());

  // 1. Max path: cross-entropy; its outputs teach the random paths.
  const bool distort = options_.distortion() > 0;
  q.set_config(q.max_config());
  q.set_capture(distort);
  torch::Tensor teacher, max_loss;
  std::vector<torch::Tensor> reference;
  {
    auto scope = q.training_step();
    auto outputs = trainer.model().forward(batch.inputs);
    max_loss = trainer.loss(outputs, batch.targets);
    max_loss.backward();
    teacher = outputs.detach();
    if (distort)
      for (auto& t : q.captured_outputs()) reference.push_back(t.defined() ? t.detach() : t);
  }
  // 2. K random paths: (1 - w)·CE + w·KL(teacher ‖ student) + λ·IDM.
  const double w = options_.distillation();
  for (int64_t k = 0; k < options_.random_paths(); ++k) {
    std::seed_seq seq{uint32_t(options_.seed()), uint32_t(options_.seed() >> 32),
                      uint32_t(trainer.global_step()), uint32_t(uint64_t(trainer.global_step()) >> 32),
                      uint32_t(k)};
    std::mt19937_64 generator(seq);
    q.set_config(q.random_config(generator));
    auto scope = q.training_step();
    auto outputs = trainer.model().forward(batch.inputs);
    auto loss = (1 - w) * trainer.loss(outputs, batch.targets) + w * distillation_loss(outputs, teacher);
    if (distort) loss = loss + options_.distortion() * q.distortion(reference);
    loss.backward();
  }
  q.set_capture(false);
  q.set_config(q.max_config());
  return {teacher, max_loss.detach()};
}

void OneShotStep::finish_gradients(Trainer& trainer) {
  // 3. Clip by value, the gradient of the whole batch (after data-parallel
  // averaging: clipping each process's share first would not be the same).
  if (options_.clip_value() <= 0) return;
  for (const auto& p : trainer.parameters()) {
    if (p.grad().defined()) p.grad().clamp_(-options_.clip_value(), options_.clip_value());
  }
}

}  // namespace train
}  // namespace diffq
