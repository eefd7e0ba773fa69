// `diffq train`: flags -> TrainConfig -> diffq::train::run_training.
#include <algorithm>
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "signals.h"
#include "diffq/train/trainer.h"

namespace diffq {
namespace cli {

namespace {

struct TrainFlags {
  train::TrainConfig config;
  std::string model_name;
  std::vector<std::string> extra;
  bool json = false;
  CLI::Option* bits = nullptr;
  std::string master;
  int rank = 0, world_size = 1;
  double timeout = 300;
  CLI::Option *rank_flag = nullptr, *world_size_flag = nullptr, *master_flag = nullptr;
  CLI::Option* bits_lr = nullptr;
  // The method flags given and the MethodOptions field each one sets.
  std::vector<std::pair<CLI::Option*, std::string>> method_flags;
};

void add_method_flags(CLI::App* tr, TrainFlags& f) {
  auto& mo = f.config.method_options;
  std::string method_help = "compression method:";
  for (const auto& m : train::methods()) method_help += "\n  " + m.name + ": " + m.summary;
  tr->add_option("--method", f.config.method, method_help)->capture_default_str();
  f.bits = tr->add_option("--bits", mo.bits, "ptq / qat / lsq / quant-noise: bit-width (1..16)");
  tr->add_option("--penalty,--lambda", mo.penalty, "diffq: λ, penalty per MiB of model size")
      ->capture_default_str();
  tr->add_option("--group-size", mo.group_size, "diffq: weights sharing one bit-width (0 = one per tensor)")
      ->capture_default_str();
  tr->add_option("--bits-lr", mo.bits_lr,
                 "learning rate of the quantizer's own parameters (Adam): diffq bits' logits (default 1e-2), lsq steps (default --lr)");
  tr->add_option("--min-bits", mo.min_bits, "diffq: lowest bit-width")->capture_default_str();
  tr->add_option("--max-bits", mo.max_bits, "diffq: highest bit-width")->capture_default_str();
  tr->add_option("--init-bits", mo.init_bits, "diffq: initial bit-width")->capture_default_str();
  tr->add_option("--extra-bits", mo.extra_bits, "diffq: bits added at true quantization")->capture_default_str();
  tr->add_option("--param", mo.param, "diffq: bits | noise parametrisation")
      ->capture_default_str()->check(CLI::IsMember({"bits", "noise"}));
  tr->add_option("--noise", mo.noise, "diffq: gaussian | uniform")
      ->capture_default_str()->check(CLI::IsMember({"gaussian", "uniform"}));
  tr->add_option("--target-mib", mo.target_mib,
                 "diffq: end at this true size in MiB; λ (--penalty is its start) adapts during training")
      ->capture_default_str();
  tr->add_option("--target-bits", mo.target_bits,
                 "diffq: end at this mean bit-width of the quantized weights (instead of --target-mib)")
      ->capture_default_str();
  tr->add_option("--frozen-fraction", mo.frozen_fraction,
                 "diffq: last fraction of the steps trained on the true quantized weights, bits frozen "
                 "(straight-through); -1 = 0.5 with a target, 0 without")
      ->capture_default_str();
  tr->add_option("--min-size", mo.min_size, "tensors of at most min_size MB (floor(min_size*2^20/4) elements) stay float")
      ->capture_default_str();
  tr->add_flag("--float16", mo.float16, "store the float leftovers as float16");
  tr->add_option("--exclude", mo.exclude, "glob of parameters left in float (repeatable)");
  tr->add_option("--opt", f.extra, "method-specific option key=value (repeatable)");
  f.bits_lr = tr->get_option("--bits-lr");
  for (const auto& field : {"bits", "penalty", "group_size", "bits_lr", "min_bits", "max_bits", "init_bits",
                            "extra_bits", "param", "noise", "target_mib", "target_bits", "frozen_fraction", "min_size",
                            "float16", "exclude"}) {
    std::string flag = std::string("--") + field;
    std::replace(flag.begin(), flag.end(), '_', '-');
    f.method_flags.emplace_back(tr->get_option(flag), field);
  }
}

void add_run_flags(CLI::App* tr, TrainFlags& f) {
  auto& c = f.config;
  tr->add_option("--epochs", c.epochs, "epochs")->capture_default_str();
  tr->add_option("--batch-size", c.batch_size, "batch size")->capture_default_str();
  tr->add_option("--lr", c.lr, "learning rate of the weights (Adam)")->capture_default_str();
  tr->add_option("--weight-decay", c.weight_decay, "weight decay")->capture_default_str();
  tr->add_option("--schedule", c.schedule, "cosine | constant")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "constant"}));
  tr->add_option("--clip", c.clip, "max gradient norm (0 = off)")->capture_default_str();
  tr->add_flag("--augment", c.augment, "fashion-mnist: random 2-pixel shifts and horizontal flips");
  tr->add_option("--init", c.init,
                 "start from the weights and buffers of this model file (same architecture, e.g. a float run's "
                 "model.diffq)");
  tr->add_option("--recalibrate", c.recalibrate,
                 "BatchNorm: re-estimate the running statistics on the true quantized weights over N training "
                 "batches before writing the model file (0 = keep those of training)")
      ->capture_default_str();
  tr->add_option("--seed", c.seed, "seed of everything (0..2^64-1)")->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& text) {
            return text.find('-') == std::string::npos ? std::string()
                                                       : "--seed must be zero or a positive integer, not " + text;
          },
          "N>=0"));
  tr->add_option("--threads", c.threads, "intra-op threads, 1..256 (1 = bit-reproducible)")->capture_default_str();
  tr->add_option("--out", c.out_dir, "output directory: model.diffq, metrics.json, log.jsonl, checkpoint.pt")->required();
  tr->add_flag("--resume", c.resume, "continue the run in --out from its last checkpoint");
  tr->add_flag("--overwrite", c.overwrite, "start over even if --out holds a run");
  tr->add_option("--checkpoint-every", c.checkpoint_every, "checkpoint every N >= 1 steps (and every epoch)")->capture_default_str();
  tr->add_option("--coding", c.coding, "model file payload coding: none | zstd | rans | auto")->capture_default_str()
      ->check(CLI::IsMember({"none", "zstd", "rans", "auto"}));
  tr->add_option("--progress", c.progress, "auto | bar | plain | none")->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "plain", "none"}));
  tr->add_option("--stop-after-step", c.stop_after_step, "testing: stop as if killed after this step")->group("");
  tr->add_flag("--json", f.json, "print metrics.json on stdout at the end");
}

// Data-parallel flags; RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (as
// torchrun sets them) are the defaults.
void add_distributed_flags(CLI::App* tr, TrainFlags& f) {
  const std::string g = "Data-parallel training (defaults from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)";
  f.rank_flag = tr->add_option("--rank", f.rank, "this process's rank in [0, --world-size)")->group(g);
  f.world_size_flag = tr->add_option("--world-size", f.world_size, "number of processes (1 = no data parallelism)")
                          ->group(g);
  f.master_flag = tr->add_option("--master", f.master, "ADDRESS:PORT of rank 0 (default 127.0.0.1:29500)")->group(g);
  tr->add_option("--dist-timeout", f.timeout,
                 "seconds to wait for the other processes before failing (a rank that died or hangs)")
      ->group(g)->capture_default_str();
}

void add_task_flags(CLI::App* tr, TrainFlags& f) {
  auto& c = f.config;
  tr->add_option("--task", c.model.task, "fashion-mnist | kjv-lm")->capture_default_str()
      ->check(CLI::IsMember(models::task_names()));
  tr->add_option("--model", f.model_name,
                 "fashion-mnist: cnn (default) | resnet20 | mobilenet | vit; kjv-lm: transformer (default) | lstm");
  tr->add_option("--train-limit", c.data.train_limit,
                 "keep this many training examples (images, or sequences of context+1 tokens); 0 = all")
      ->capture_default_str();
  tr->add_option("--test-limit", c.data.test_limit, "keep this many test images / tokens; 0 = all")->capture_default_str();
  tr->add_option("--data-dir", c.data.fashion_dir, "Fashion-MNIST directory")->capture_default_str();
  tr->add_option("--text", c.data.text_path, "kjv-lm: text file in the `bible` output format (default: run `bible`)");
  tr->add_option("--vocab-size", c.data.vocab_size, "kjv-lm: vocabulary cap")->capture_default_str();
  tr->add_option("--context", c.model.context, "kjv-lm: context length")->capture_default_str();
  tr->add_option("--dim", c.model.dim, "kjv-lm: model width")->capture_default_str();
  tr->add_option("--layers", c.model.layers, "kjv-lm: layers")->capture_default_str();
  tr->add_option("--width", c.model.width, "fashion-mnist: channel width multiplier")->capture_default_str();
  tr->add_option("--norm", c.model.norm, "resnet20 / mobilenet: batch | group (default: batch for resnet20, group for mobilenet)")
      ->check(CLI::IsMember({"batch", "group"}));
  tr->add_option("--model-file", c.model_file,
                 "train this TorchScript model instead of a built-in one (forward: the task's input -> logits)");
}

// Flags that CLI11 cannot check alone; returns 0 or the exit status 2.
int finish_flags(TrainFlags& f, std::ostream& err) {
  auto& c = f.config;
  const auto& method = train::find_method(c.method);
  // Quant-Noise's block modes (--opt qn_mode=proxy|ipq) have no bit-width.
  const bool block_mode = c.method == "quant-noise" &&
                          std::any_of(f.extra.begin(), f.extra.end(),
                                      [](const std::string& kv) { return kv.rfind("qn_mode=", 0) == 0; });
  const bool needs_bits =
      !block_mode && std::find(method.options.begin(), method.options.end(), "bits") != method.options.end();
  if (needs_bits && f.bits->count() == 0) {
    err << "diffq train: --bits N is required for --method " << c.method << "\n";
    return 2;
  }
  auto& d = c.distributed;
  d = train::distributed_options_from_environment();
  if (f.rank_flag->count()) d.rank(f.rank);
  if (f.world_size_flag->count()) d.world_size(f.world_size);
  if (f.master_flag->count()) {
    const auto [addr, port] = train::parse_master(f.master);
    d.master_addr(addr).master_port(port);
  }
  d.timeout_seconds(f.timeout);
  for (const auto& flag : f.method_flags) {
    if (flag.first->count() == 0 ||
        std::find(method.options.begin(), method.options.end(), flag.second) != method.options.end())
      continue;
    std::vector<std::string> reads;
    for (const auto& field : method.options) {
      std::string name = "--" + field;
      std::replace(name.begin(), name.end(), '_', '-');
      reads.push_back(name);
    }
    err << "diffq train: " << flag.first->get_name() << " does not apply to --method " << c.method << " ("
        << (reads.empty() ? "it takes no method options" : "it takes: " + join(reads)) << ")\n";
    return 2;
  }
  if (f.bits_lr->count() != 0 && !(c.method_options.bits_lr > 0)) {
    err << "diffq train: --bits-lr must be a positive learning rate, not " << c.method_options.bits_lr << "\n";
    return 2;
  }
  if (c.out_dir.empty()) {
    err << "diffq train: --out must name a directory (it is empty)\n";
    return 2;
  }
  if (!c.model_file.empty()) {
    if (!f.model_name.empty()) {
      err << "diffq train: --model and --model-file exclude each other\n";
      return 2;
    }
    f.model_name = models::kScriptModel;
  }
  if (f.model_name.empty()) f.model_name = c.model.task == "kjv-lm" ? "transformer" : "cnn";
  c.model.name = f.model_name;
  auto names = models::model_names(c.model.task);
  if (!c.model_file.empty()) names.push_back(models::kScriptModel);
  if (std::find(names.begin(), names.end(), f.model_name) == names.end()) {
    err << "diffq train: unknown model '" << f.model_name << "' for --task " << c.model.task
        << " (one of: " << join(names) << ")\n";
    return 2;
  }
  for (const auto& kv : f.extra) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "diffq train: --opt expects key=value, got '" << kv << "'\n";
      return 2;
    }
    c.method_options.extra[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return 0;
}

}  // namespace

Command add_train(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  auto* tr = app.add_subcommand("train", "train a model of a task with a compression method");
  add_task_flags(tr, *flags);
  add_method_flags(tr, *flags);
  add_run_flags(tr, *flags);
  add_distributed_flags(tr, *flags);
  return {tr, [flags](std::ostream& out, std::ostream& err) {
            if (int status = finish_flags(*flags, err)) return status;
            flags->config.progress_stream = &err;
            StopPoint stop_point;  // a signal stops the run after its next step
            auto result = train::run_training(flags->config);
            if (result.interrupted) return 130;
            if (flags->config.distributed.rank() > 0) return 0;  // rank 0 reports
            if (flags->json) out << result.metrics.dump(2) << "\n";
            else out << "model file: " << result.metrics["model_file"].get<std::string>() << "\n";
            return 0;
          }};
}

}  // namespace cli
}  // namespace diffq
