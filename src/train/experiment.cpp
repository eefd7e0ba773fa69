// The experiments' runner (see include/diffq/train/experiment.h): a run is
// a Trainer over a task's data, plus a run directory (checkpoints, log,
// metrics, model file) and a progress display.
#include "diffq/train/experiment.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <unistd.h>

#include <torch/torch.h>

#include "diffq/allocator.h"
#include "diffq/batchnorm.h"
#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/oneshot/oneshot_quantizer.h"
#include "diffq/train/distributed.h"
#include "diffq/train/loop.h"
#include "diffq/train/tasks.h"
#include "progress.h"
#include "run_dir.h"
#include "run_model.h"
#include "run_record.h"
#include "seeds.h"

namespace diffq {
namespace train {

namespace {

std::atomic<bool> g_stop{false};

// Running statistics of the current epoch.
struct Score {
  double loss_sum = 0, correct = 0, count = 0;
};

TrainerOptions trainer_options(const TrainConfig& c, int64_t total_steps) {
  return TrainerOptions()
      .method(c.method)
      .method_options(c.method_options)
      .lr(c.lr)
      .weight_decay(c.weight_decay)
      .schedule(parse_schedule(c.schedule))
      .total_steps(total_steps)
      .clip(c.clip)
      .seed(c.seed);
}

// The loop's plan: this process's part of a data-parallel job.
LoopPlan loop_plan(const TrainConfig& c, int64_t examples) {
  LoopPlan plan{examples, c.batch_size, c.epochs};
  plan.rank = c.distributed.rank();
  plan.world_size = c.distributed.world_size();
  return plan;
}

// Only rank 0 shows progress and writes files.
TrainConfig for_rank(TrainConfig c) {
  if (c.distributed.rank() > 0) {
    c.progress = "none";
    c.out_dir.clear();
  }
  return c;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DIFFQ_CHECK(in.good(), "cannot read '", path, "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Run {
 public:
  Run(const TrainConfig& config, std::shared_ptr<Communicator> comm)
      : config_(for_rank(config)),
        comm_(std::move(comm)),
        dir_(config_.out_dir),
        data_(load_task_data(config_.model, config_.data)),
        model_(build_run_model(config_)),
        plan_(loop_plan(config_, data_.train_examples())),
        trainer_(model_.handle, trainer_options(config_, plan_.total_steps())),
        identity_(run_identity(config_).dump()),
        progress_(config_.progress, config_.progress_stream ? *config_.progress_stream : std::cerr, data_.lm) {
    if (comm_->world_size() > 1) parallel_ = std::make_unique<DataParallel>(trainer_, comm_);
    shard_ = EvaluationShard{comm_->rank(), comm_->world_size(),
                             [this](std::vector<double> v) { return comm_->all_reduce_sum(std::move(v)); }};
  }

  TrainResult execute(bool resume) {
    if (resume) restore();
    else dir_.reset_log(0);
    TrainResult result;
    LoopHooks hooks;
    hooks.batch = [this](const torch::Tensor& index, const Position& pos) {
      step_start_ = std::chrono::steady_clock::now();
      auto xy = task_batch(data_, index, config_.augment,
                           derive_seed(config_.seed, uint64_t(pos.global_step), Stream::kAugment));
      targets_ = xy.second;
      return Batch{xy.first, xy.second};
    };
    hooks.start_epoch = [this](const Position& pos) {
      progress_.start_epoch(pos.epoch, config_.epochs, plan_.steps_per_epoch(), pos.step);
    };
    hooks.after_step = [this](const Position& pos, const StepResult& r) { after_step(pos, r); };
    hooks.end_epoch = [this](const Position& pos) { end_epoch(pos); };
    hooks.should_stop = [this](const Position&) { return stop_; };
    if (!run_epochs(trainer_, plan_, position_, hooks)) {
      progress_.finish_line();
      progress_.message(dir_.writes() ? "stopped; resume with --resume (checkpoint " + dir_.checkpoint() + ")"
                                      : "stopped");
      result.interrupted = true;
      return result;
    }
    finish(result);
    return result;
  }

 private:
  nlohmann::json record() const {
    nlohmann::json r{{"identity", identity_},
                     {"world_size", comm_->world_size()},
                     {"epoch", position_.epoch},
                     {"step", position_.step},
                     {"log_lines", log_lines_},
                     {"train_seconds", train_seconds_},
                     {"score", {score_.loss_sum, score_.correct, score_.count}}};
    // One-shot: the bit-width scheduler's state (the current weight candidates).
    if (auto* q = dynamic_cast<const oneshot::OneShotQuantizer*>(trainer_.quantizer())) {
      auto& candidates = r["oneshot_candidates"] = nlohmann::json::array();
      for (size_t i = 0; i < q->layers().size(); ++i) candidates.push_back(q->weight_candidates(i));
    }
    return r;
  }

  void checkpoint(const nlohmann::json& record) {
    if (dir_.writes()) trainer_.save_checkpoint(dir_.checkpoint(), record);
  }

  // The checkpoint, read by rank 0 and handed to the others (which may run
  // on machines without the run directory).
  nlohmann::json load_checkpoint() {
    if (comm_->world_size() == 1) return trainer_.load_checkpoint(dir_.checkpoint());
    const std::string bytes = comm_->broadcast_bytes(comm_->rank() == 0 ? read_bytes(dir_.checkpoint()) : "");
    if (comm_->rank() == 0) return trainer_.load_checkpoint(dir_.checkpoint());
    const auto copy = std::filesystem::temp_directory_path() /
                      ("diffq-checkpoint." + std::to_string(::getpid()) + ".rank" + std::to_string(comm_->rank()));
    {
      std::ofstream out(copy, std::ios::binary);
      out.write(bytes.data(), std::streamsize(bytes.size()));
      DIFFQ_CHECK(out.good(), "cannot write '", copy.string(), "'");
    }
    struct Remove {
      std::filesystem::path path;
      ~Remove() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
      }
    } remove{copy};
    return trainer_.load_checkpoint(copy.string());
  }

  void restore() {
    const auto r = load_checkpoint();
    const int saved_world = r.value("world_size", 1);
    DIFFQ_CHECK(saved_world == comm_->world_size(), "the checkpoint in '", config_.out_dir, "' was written by ",
                saved_world, " process", saved_world == 1 ? "" : "es", "; resume it with the same number (now ",
                comm_->world_size(), ")");
    if (r.value("identity", "") != identity_) refuse_other_run(r.value("identity", "{}"));
    position_.epoch = r.at("epoch").get<int64_t>();
    position_.step = r.at("step").get<int64_t>();
    position_.global_step = trainer_.global_step();
    log_lines_ = r.at("log_lines").get<int64_t>();
    train_seconds_ = r.at("train_seconds").get<double>();
    const auto& s = r.at("score");
    score_ = Score{s.at(0).get<double>(), s.at(1).get<double>(), s.at(2).get<double>()};
    restore_candidates(r);
    dir_.reset_log(log_lines_);
    progress_.message("resuming " + dir_.dir() + " at epoch " + std::to_string(position_.epoch + 1) + ", step " +
                      std::to_string(position_.step) + "/" + std::to_string(plan_.steps_per_epoch()));
  }

  void restore_candidates(const nlohmann::json& r) {
    auto* q = dynamic_cast<oneshot::OneShotQuantizer*>(trainer_.quantizer());
    if (!q || !r.contains("oneshot_candidates")) return;
    const auto& c = r["oneshot_candidates"];
    DIFFQ_CHECK(c.is_array() && c.size() == q->layers().size(), "the checkpoint's one-shot candidates do not fit the model");
    for (size_t i = 0; i < c.size(); ++i) q->set_weight_candidates(i, c[i].get<std::vector<int>>());
  }

  [[noreturn]] void refuse_other_run(const std::string& saved_text) const {
    auto saved = nlohmann::json::parse(saved_text, nullptr, false);
    const auto now = nlohmann::json::parse(identity_);
    std::string diff;
    for (auto it = now.begin(); it != now.end(); ++it)
      if (saved.is_discarded() || !saved.contains(it.key()) || saved[it.key()] != it.value())
        diff += " " + it.key() + " (checkpoint " +
                (!saved.is_discarded() && saved.contains(it.key()) ? saved[it.key()].dump() : "-") + ", now " +
                it.value().dump() + ")";
    throw Error("the checkpoint '" + dir_.checkpoint() + "' belongs to a different run; differences:" + diff +
                " (use --overwrite to start over)");
  }

  void after_step(const Position& pos, const StepResult& r) {
    const double n = double(r.outputs.numel() / r.outputs.size(-1));
    score_.loss_sum += r.loss.item<double>() * n;
    score_.correct += r.outputs.argmax(-1).reshape(-1).eq(targets_.reshape(-1)).sum().item<double>();
    score_.count += n;
    train_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
    progress_.update(pos.step, score_.loss_sum / score_.count, score_.correct / score_.count, trainer_.mean_bits());
    stop_ = comm_->any(g_stop.load() || (config_.stop_after_step > 0 && pos.global_step == config_.stop_after_step));
    const bool periodic = config_.checkpoint_every > 0 && pos.global_step % config_.checkpoint_every == 0;
    if (pos.step < plan_.steps_per_epoch() && (periodic || stop_)) checkpoint(record());
  }

  void end_epoch(const Position& pos) {
    const auto total = comm_->all_reduce_sum({score_.loss_sum, score_.correct, score_.count});
    score_ = Score{total[0], total[1], total[2]};
    nlohmann::json line{{"epoch", pos.epoch + 1}, {"steps", pos.global_step}};
    line["train_loss"] = score_.loss_sum / score_.count;
    if (data_.lm) line["train_perplexity"] = std::exp(score_.loss_sum / score_.count);
    else line["train_accuracy"] = 100.0 * score_.correct / score_.count;
    const auto score = evaluate_quantized("valid");
    if (data_.lm) line["valid_perplexity"] = score["perplexity"];
    else line["test_accuracy"] = score["accuracy"];
    line["mean_bits"] = trainer_.mean_bits();
    line["true_mib"] = trainer_.quantizer() ? trainer_.quantizer()->true_model_size()
                                            : double(count_parameters(model_.handle.ref)) * 4 / 1048576.0;
    if (trainer_.method().penalized) line["penalty"] = trainer_.size_penalty();
    line["train_seconds"] = train_seconds_;
    progress_.end_epoch(line);
    dir_.append_log(line);
    ++log_lines_;
    score_ = Score();
    stop_ = comm_->any(g_stop.load() || (config_.stop_after_step > 0 && pos.global_step == config_.stop_after_step));
    if (pos.epoch + 1 < config_.epochs) {
      auto next = record();
      next["epoch"] = pos.epoch + 1;
      next["step"] = 0;
      checkpoint(next);
    }
  }

  // The method's true quantized weights (or the float ones), in eval mode.
  nlohmann::json evaluate_quantized(const std::string& split) {
    if (!trainer_.quantizer()) return evaluate_task(model_.handle, data_, split, shard_);
    auto scope = trainer_.quantizer()->quantized_evaluation();
    return evaluate_task(model_.handle, data_, split, shard_);
  }

  // BatchNorm statistics re-estimated on the true quantized weights over the
  // first `recalibrate` training batches (unaugmented); returns the layers done.
  int64_t recalibrate() {
    std::vector<torch::Tensor> batches;
    for (int64_t i = 0; i < config_.recalibrate && i * plan_.batch_size < plan_.examples; ++i) {
      const int64_t b0 = i * plan_.batch_size, b1 = std::min(plan_.examples, b0 + plan_.batch_size);
      batches.push_back(task_batch(data_, torch::arange(b0, b1, torch::kInt64), false, 0).first);
    }
    std::unique_ptr<QuantizedEvaluation> scope;
    if (trainer_.quantizer()) scope.reset(new QuantizedEvaluation(trainer_.quantizer()->quantized_evaluation()));
    return recalibrate_batchnorm(model_.handle.ref, batches,
                                 [this](const torch::Tensor& x) { model_.handle.forward(x); });
  }

  void finish(TrainResult& result) {
    const auto t0 = std::chrono::steady_clock::now();
    // One-shot: the coupled network (float weights, every candidate's steps,
    // every BatchNorm, the scheduler's candidates) for `diffq search`, kept
    // before any recalibration.
    std::string coupled;
    if (dir_.writes() && dynamic_cast<oneshot::OneShotQuantizer*>(trainer_.quantizer())) {
      coupled = (std::filesystem::path(dir_.dir()) / kCoupledFile).string();
      trainer_.save_checkpoint(coupled, record());
    }
    const int64_t recalibrated = config_.recalibrate > 0 ? recalibrate() : 0;
    QuantizedState state = trainer_.quantized_state();
    record_run(state, config_);
    const SaveOptions save_options = SaveOptions().entropy_coding(parse_entropy_coding(config_.coding)).threads(1);
    uint64_t file_bytes = 0;
    if (dir_.writes()) {
      save(state, dir_.model(), save_options);
      state = load(dir_.model());  // what the file holds, read back once
      file_bytes = std::filesystem::file_size(dir_.model());
    } else {
      file_bytes = serialize(state, save_options).size();
    }
    auto& m = result.metrics;
    m = {{"task", config_.model.task}, {"model", config_.model.name}, {"method", config_.method},
         {"params", count_parameters(model_.handle.ref)}};
    // The model rebuilt from the file alone (a fresh copy of the architecture).
    const auto restored = restored_model(state, config_.model_file);
    m.update(score_metrics(evaluate_task(restored.handle, data_, "test", shard_), data_));
    if (trainer_.quantizer()) {
      const auto latent = evaluate_task(model_.handle, data_, "test", shard_);
      m[data_.lm ? "latent_float_perplexity" : "latent_float_accuracy"] = latent[data_.lm ? "perplexity" : "accuracy"];
    }
    m.update(size_metrics(state, file_bytes));
    m.update({{"epochs", config_.epochs}, {"steps", position_.global_step}, {"train_seconds", train_seconds_},
              {"eval_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
              {"train_examples", plan_.examples}, {"test_examples", data_.test_examples()},
              {"batch_size", config_.batch_size}, {"seed", config_.seed}, {"threads", config_.threads},
              {"model_file", dir_.writes() ? dir_.model() : ""}});
    m["options"] = metrics_options(config_, data_.lm);
    m["recalibrated_layers"] = recalibrated;
    if (trainer_.method().penalized) m["final_penalty"] = trainer_.size_penalty();
    m["world_size"] = comm_->world_size();
    // The thread pools' wait settings this process ran with (README: more
    // than one thread), null when unset.
    for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT"}) {
      const char* value = std::getenv(name);
      m["thread_environment"][name] = value ? nlohmann::json(value) : nlohmann::json();
    }
    // The allocator serving malloc (its peak memory differs; diffq/allocator.h).
    const auto allocator = allocator_info();
    m["allocator"] = {{"name", allocator.name}, {"version", allocator.version},
                      {"dirty_decay_ms", allocator.dirty_decay_ms}, {"muzzy_decay_ms", allocator.muzzy_decay_ms}};
    if (parallel_) {
      m["global_batch_size"] = plan_.global_batch();
      m["allreduce_seconds"] = parallel_->seconds();
      m["gradient_bytes_per_step"] = parallel_->gradient_bytes();
      m["quantizer_gradient_bytes_per_step"] = parallel_->quantizer_gradient_bytes();
    }
    if (!coupled.empty()) m["coupled_network"] = coupled;
    progress_.final_summary(m);
    dir_.finish(m);
    result.state = std::move(state);
  }

  TrainConfig config_;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<DataParallel> parallel_;
  EvaluationShard shard_;
  RunDirectory dir_;
  TaskData data_;
  RunModel model_;
  LoopPlan plan_;
  Trainer trainer_;
  std::string identity_;
  Progress progress_;
  Position position_;
  Score score_;
  int64_t log_lines_ = 0;
  double train_seconds_ = 0;
  bool stop_ = false;
  torch::Tensor targets_;
  std::chrono::steady_clock::time_point step_start_ = std::chrono::steady_clock::now();
};

// How the run starts, decided by rank 0 (the owner of the run directory)
// and told to the others; rank 0's refusal is every rank's error.
RunDirectory::Start agreed_start(RunDirectory& dir, const TrainConfig& config, Communicator& comm) {
  if (comm.world_size() == 1) return dir.prepare(config);
  std::string decision;
  if (comm.rank() == 0) {
    try {
      decision = std::to_string(int(dir.prepare(config)));
    } catch (const Error& e) {
      comm.broadcast_bytes(std::string("error: ") + e.what());
      throw;
    }
  }
  decision = comm.broadcast_bytes(decision);
  DIFFQ_CHECK(decision.rfind("error: ", 0) != 0, "rank 0 refused the run: ", decision.substr(7));
  return RunDirectory::Start(std::stoi(decision));
}

}  // namespace

void request_stop() { g_stop.store(true); }

TrainResult run_training(const TrainConfig& requested) {
  check_config(requested);
  TrainConfig config = requested;
  auto& own_lr = config.method_options.bits_lr;
  if (own_lr <= 0) own_lr = find_method(config.method).default_own_lr(config.lr);
  torch::set_num_threads(config.threads);
  auto comm = std::make_shared<Communicator>(config.distributed);
  RunDirectory dir(comm->rank() == 0 ? config.out_dir : "");
  const auto start = agreed_start(dir, config, *comm);
  if (start == RunDirectory::Start::kFinished) {
    TrainResult r;
    r.metrics = nlohmann::json::parse(comm->broadcast_bytes(comm->rank() == 0 ? dir.finished_metrics().dump() : ""));
    if (comm->rank() == 0) r.state = load(dir.model());
    return r;
  }
  Run run(config, comm);
  auto result = run.execute(start == RunDirectory::Start::kResume);
  if (result.interrupted) g_stop.store(false);  // this run answered the request
  return result;
}

}  // namespace train
}  // namespace diffq
