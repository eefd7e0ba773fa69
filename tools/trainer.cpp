// The experiments' trainer (see include/diffq/train/trainer.h).
#include "diffq/train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "diffq/data/fashion_mnist.h"
#include "diffq/data/text.h"
#include "diffq/diffq_quantizer.h"
#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/restore.h"
#include "diffq/uniform_quantizer.h"
#include "progress.h"

namespace fs = std::filesystem;

namespace diffq {
namespace train {

namespace {

std::atomic<bool> g_stop{false};

uint64_t mix(uint64_t a, uint64_t b, uint64_t c = 0) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
               (c + 0x94D049BB133111EBull) * 0xD6E8FEB86659FD93ull;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x >> 1;  // positive as int64 (torch seeds)
}

at::Generator generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

// ------------------------------------------------------------------ data
struct TaskData {
  bool lm = false;
  torch::Tensor train_x, train_y, test_x, test_y;       // images
  torch::Tensor train_tokens, valid_tokens, test_tokens;  // language
  int64_t context = 0;
  int64_t vocab = 0;
  double test_unk_rate = 0;
  int64_t train_examples() const {
    return lm ? (train_tokens.numel() - 1) / context : train_x.size(0);
  }
  int64_t test_examples() const { return lm ? test_tokens.numel() : test_x.size(0); }
};

TaskData load_data(models::ModelConfig& model, const DataOptions& d) {
  TaskData data;
  if (model.task == "fashion-mnist") {
    auto train = data::load_fashion_mnist(d.fashion_dir, "train", d.train_limit);
    auto test = data::load_fashion_mnist(d.fashion_dir, "t10k", d.test_limit);
    data.train_x = train.images;
    data.train_y = train.labels;
    data.test_x = test.images;
    data.test_y = test.labels;
    return data;
  }
  DIFFQ_CHECK(model.task == "kjv-lm", "unknown task '", model.task, "' (fashion-mnist or kjv-lm)");
  data.lm = true;
  auto corpus = data::make_corpus(data::load_kjv(d.text_path), d.vocab_size);
  auto tensor = [](const std::vector<int64_t>& v) {
    return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kInt64);
  };
  data.context = model.context;
  data.train_tokens = tensor(corpus.train);
  if (d.train_limit > 0) {
    const int64_t n = std::min<int64_t>(data.train_tokens.numel(), d.train_limit * model.context + 1);
    data.train_tokens = data.train_tokens.slice(0, 0, n);
  }
  data.valid_tokens = tensor(corpus.valid);
  data.test_tokens = tensor(corpus.test);
  if (d.test_limit > 0) {
    data.valid_tokens = data.valid_tokens.slice(0, 0, std::min<int64_t>(data.valid_tokens.numel(), d.test_limit));
    data.test_tokens = data.test_tokens.slice(0, 0, std::min<int64_t>(data.test_tokens.numel(), d.test_limit));
  }
  DIFFQ_CHECK(data.train_tokens.numel() > model.context, "the train split has only ",
              data.train_tokens.numel(), " tokens, fewer than the context ", model.context, " + 1");
  DIFFQ_CHECK(data.test_tokens.numel() >= 2 && data.valid_tokens.numel() >= 2,
              "the text has no validation (Heb) or test (Jas..Rev) verses");
  data.vocab = corpus.vocab.size();
  data.test_unk_rate = corpus.test_unk_rate;
  model.vocab = data.vocab;
  return data;
}

// A training batch: examples `index` (int64), augmented with `gen`.
std::pair<torch::Tensor, torch::Tensor> batch(const TaskData& data, const torch::Tensor& index,
                                              bool augment, uint64_t seed) {
  if (data.lm) {
    auto starts = (index * data.context).view({-1, 1});
    auto seq = data.train_tokens.index_select(
                   0, (starts + torch::arange(data.context + 1, torch::kInt64)).view(-1))
                   .view({index.size(0), data.context + 1});
    return {seq.slice(1, 0, data.context), seq.slice(1, 1, data.context + 1)};
  }
  auto x = data.train_x.index_select(0, index);
  auto y = data.train_y.index_select(0, index);
  if (augment) {
    auto gen = generator(seed);
    const int64_t n = x.size(0);
    const float background = (0.f - 0.2860f) / 0.3530f;
    auto padded = torch::constant_pad_nd(x, {2, 2, 2, 2}, background);
    auto shifts = torch::randint(0, 5, {n, 2}, gen, torch::kInt64);
    auto flips = torch::randint(0, 2, {n}, gen, torch::kInt64);
    auto s = shifts.accessor<int64_t, 2>();
    auto f = flips.accessor<int64_t, 1>();
    std::vector<torch::Tensor> out;
    out.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      auto img = padded[i].slice(1, s[i][0], s[i][0] + 28).slice(2, s[i][1], s[i][1] + 28);
      out.push_back(f[i] ? img.flip({2}) : img);
    }
    x = torch::stack(out);
  }
  return {x, y};
}

struct Score {
  double loss_sum = 0, correct = 0, count = 0;
};

// Evaluates `model` (as it is: the caller chooses float or quantized weights).
// Images: accuracy (%) on the test set. LM: perplexity of `split`.
nlohmann::json evaluate(models::Model& model, const TaskData& data, const std::string& split) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  nlohmann::json out;
  if (!data.lm) {
    int64_t correct = 0;
    const int64_t n = data.test_x.size(0);
    for (int64_t i = 0; i < n; i += 500) {
      const int64_t e = std::min(n, i + 500);
      auto pred = model.forward(data.test_x.slice(0, i, e)).argmax(1);
      correct += pred.eq(data.test_y.slice(0, i, e)).sum().item<int64_t>();
    }
    out["accuracy"] = 100.0 * double(correct) / double(n);
  } else {
    const auto& t = split == "valid" ? data.valid_tokens : data.test_tokens;
    const int64_t n = t.numel(), ctx = data.context;
    const int64_t windows = (n - 1) / ctx;
    double nll = 0;
    int64_t tokens = 0;
    for (int64_t w = 0; w < windows; w += 64) {
      const int64_t we = std::min(windows, w + 64);
      auto starts = (torch::arange(w, we, torch::kInt64) * ctx).view({-1, 1});
      auto seq = t.index_select(0, (starts + torch::arange(ctx + 1, torch::kInt64)).view(-1))
                     .view({we - w, ctx + 1});
      auto logits = model.forward(seq.slice(1, 0, ctx));
      nll += torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                       seq.slice(1, 1, ctx + 1).reshape(-1), {},
                                       at::Reduction::Sum)
                 .item<double>();
      tokens += (we - w) * ctx;
    }
    const int64_t rest = (n - 1) - windows * ctx;
    if (rest > 0) {
      auto seq = t.slice(0, windows * ctx, n).view({1, -1});
      auto logits = model.forward(seq.slice(1, 0, rest));
      nll += torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                       seq.slice(1, 1, rest + 1).reshape(-1), {},
                                       at::Reduction::Sum)
                 .item<double>();
      tokens += rest;
    }
    out["loss"] = nll / double(tokens);
    out["perplexity"] = std::exp(nll / double(tokens));
    out["tokens"] = tokens;
  }
  if (was_training) model.train();
  return out;
}

// ------------------------------------------------------------------ files
void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    DIFFQ_CHECK(out.good(), "cannot write '", tmp, "'");
    out << text;
    out.flush();
    DIFFQ_CHECK(out.good(), "cannot write '", tmp, "'");
  }
  fsync_path(tmp, false);
  DIFFQ_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
  fsync_path(fs::path(path).parent_path().string(), true);
}

torch::Tensor string_tensor(const std::string& s) {
  auto t = torch::empty({int64_t(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}
std::string tensor_string(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), size_t(c.numel()));
}

// The part of the configuration a checkpoint must match.
nlohmann::json identity(const TrainConfig& c, const MethodInfo& m) {
  return {{"task", c.model.task},      {"model", c.model.name},      {"width", c.model.width},
          {"context", c.model.context}, {"dim", c.model.dim},         {"layers", c.model.layers},
          {"method", c.method},         {"options", options_json(m, c.method_options)},
          {"vocab_size", c.data.vocab_size}, {"train_limit", c.data.train_limit},
          {"test_limit", c.data.test_limit}, {"epochs", c.epochs},   {"batch_size", c.batch_size},
          {"lr", c.lr},                 {"weight_decay", c.weight_decay}, {"schedule", c.schedule},
          {"clip", c.clip},             {"augment", c.augment},       {"seed", c.seed}};
}

struct Position {
  int64_t epoch = 0, step = 0, global_step = 0, log_lines = 0;
  double train_seconds = 0;
  Score score;
};

void save_checkpoint(const std::string& path, const Position& pos, const std::string& ident,
                     models::Model& model, Quantizer* quantizer, torch::optim::Optimizer& opt,
                     torch::optim::Optimizer* own_opt) {
  torch::serialize::OutputArchive a;
  a.write("identity", string_tensor(ident));
  a.write("position", torch::tensor({pos.epoch, pos.step, pos.global_step, pos.log_lines}, torch::kInt64));
  a.write("scalars", torch::tensor({pos.train_seconds, pos.score.loss_sum, pos.score.correct, pos.score.count},
                                   torch::kFloat64));
  for (const auto& p : model.named_parameters()) a.write("model." + p.key(), p.value().detach());
  if (quantizer) {
    const auto own = quantizer->parameters();
    for (size_t i = 0; i < own.size(); ++i) a.write("own." + std::to_string(i), own[i].detach());
  }
  torch::serialize::OutputArchive oa;
  opt.save(oa);
  a.write("optimizer", oa);
  if (own_opt) {
    torch::serialize::OutputArchive ob;
    own_opt->save(ob);
    a.write("own_optimizer", ob);
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  a.save_to(tmp);
  fsync_path(tmp, false);
  DIFFQ_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
  fsync_path(fs::path(path).parent_path().string(), true);
}

Position load_checkpoint(const std::string& path, const std::string& ident, models::Model& model,
                         Quantizer* quantizer, torch::optim::Optimizer& opt,
                         torch::optim::Optimizer* own_opt) {
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const std::exception& e) {
    throw Error("cannot read the checkpoint '" + path + "': " + e.what());
  }
  // A fresh tensor per read: InputArchive::read set_()s a defined tensor,
  // which would reinterpret the storage under the old dtype.
  auto get = [&](const std::string& key) {
    torch::Tensor fresh;
    a.read(key, fresh);
    return fresh;
  };
  torch::Tensor t = get("identity");
  const std::string saved = tensor_string(t);
  if (saved != ident) {
    auto s = nlohmann::json::parse(saved), c = nlohmann::json::parse(ident);
    std::string diff;
    for (auto it = c.begin(); it != c.end(); ++it)
      if (!s.contains(it.key()) || s[it.key()] != it.value())
        diff += " " + it.key() + " (checkpoint " + (s.contains(it.key()) ? s[it.key()].dump() : "-") +
                ", now " + it.value().dump() + ")";
    throw Error("the checkpoint '" + path + "' belongs to a different run; differences:" + diff +
                " (use --overwrite to start over)");
  }
  Position pos;
  t = get("position");
  pos.epoch = t[0].item<int64_t>();
  pos.step = t[1].item<int64_t>();
  pos.global_step = t[2].item<int64_t>();
  pos.log_lines = t[3].item<int64_t>();
  t = get("scalars");
  pos.train_seconds = t[0].item<double>();
  pos.score.loss_sum = t[1].item<double>();
  pos.score.correct = t[2].item<double>();
  pos.score.count = t[3].item<double>();
  torch::NoGradGuard g;
  for (auto& p : model.named_parameters()) {
    p.value().copy_(get("model." + p.key()));
  }
  if (quantizer) {
    auto own = quantizer->parameters();
    for (size_t i = 0; i < own.size(); ++i) {
      own[i].copy_(get("own." + std::to_string(i)));
    }
  }
  torch::serialize::InputArchive oa;
  a.read("optimizer", oa);
  opt.load(oa);
  if (own_opt) {
    torch::serialize::InputArchive ob;
    a.read("own_optimizer", ob);
    own_opt->load(ob);
  }
  return pos;
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

torch::Tensor loss_of(const torch::Tensor& logits, const torch::Tensor& y) {
  return torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), y.reshape(-1));
}

// Model files record the architecture and data options needed by `eval`.
void add_arch(QuantizedState& state, const TrainConfig& c) {
  state.options["arch.task"] = c.model.task;
  state.options["arch.model"] = c.model.name;
  std::ostringstream w;
  w.precision(17);
  w << c.model.width;
  state.options["arch.width"] = w.str();
  if (c.model.task == "kjv-lm") {
    state.options["arch.vocab"] = std::to_string(c.model.vocab);
    state.options["arch.context"] = std::to_string(c.model.context);
    state.options["arch.dim"] = std::to_string(c.model.dim);
    state.options["arch.layers"] = std::to_string(c.model.layers);
    state.options["data.vocab_size"] = std::to_string(c.data.vocab_size);
  }
  state.options["run.method"] = c.method;
}

EntropyCoding coding_of(const std::string& name) {
  if (name == "none") return EntropyCoding::kNone;
  if (name == "zstd") return EntropyCoding::kZstd;
  if (name == "rans") return EntropyCoding::kRans;
  if (name == "auto") return EntropyCoding::kAuto;
  throw Error("unknown coding '" + name + "' (none, zstd, rans or auto)");
}

double live_bits(Quantizer* q, double fallback) {
  if (auto* d = dynamic_cast<DiffQuantizer*>(q)) return d->mean_bits();
  return fallback;
}

}  // namespace

void request_stop() { g_stop.store(true); }

QuantizedState float_state(const ModelRef& model) {
  QuantizedState state;
  state.method = "float";
  std::map<const void*, size_t> seen;
  for (const auto& p : model.parameters()) {
    const void* key = p.tensor.unsafeGetTensorImpl();
    auto it = seen.find(key);
    if (it != seen.end()) {
      state.tensors[it->second].aliases.push_back(p.name);
      continue;
    }
    seen[key] = state.tensors.size();
    TensorRecord r;
    r.name = p.name;
    r.shape = p.tensor.sizes().vec();
    r.encoding = Encoding::kFloat32;
    auto v = p.tensor.detach().to(torch::kFloat32).contiguous().cpu();
    r.values_f32.assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
    state.tensors.push_back(std::move(r));
  }
  return state;
}

double mean_bits(const QuantizedState& state) {
  double bits = 0, n = 0;
  for (const auto& r : state.tensors) {
    const double numel = double(r.numel());
    switch (r.encoding) {
      case Encoding::kUniform:
      case Encoding::kLSQ:
        bits += r.bits * numel;
        n += numel;
        break;
      case Encoding::kDiffQGroups: {
        const double g = r.group_size == 0 ? numel : double(r.group_size);
        for (auto b : r.group_bits) bits += b * g;
        n += numel;
        break;
      }
      case Encoding::kProductQuantized:
        bits += std::ceil(std::log2(std::max<double>(2, double(r.num_centroids)))) * double(r.levels.size()) +
                16.0 * double(r.codebook.size());
        n += numel;
        break;
      default:
        break;
    }
  }
  return n > 0 ? bits / n : 32.0;
}

std::shared_ptr<models::Model> model_from_state(const QuantizedState& state) {
  auto get = [&](const std::string& key) -> std::string {
    auto it = state.options.find(key);
    DIFFQ_CHECK(it != state.options.end(), "the model file has no '", key,
                "' option: it was not written by `diffq train`, so its architecture is unknown");
    return it->second;
  };
  models::ModelConfig c;
  c.task = get("arch.task");
  c.name = get("arch.model");
  c.width = std::stod(get("arch.width"));
  if (c.task == "kjv-lm") {
    c.vocab = std::stoll(get("arch.vocab"));
    c.context = std::stoll(get("arch.context"));
    c.dim = std::stoll(get("arch.dim"));
    c.layers = std::stoll(get("arch.layers"));
  }
  auto model = models::make_model(c);
  restore(*model, state);
  return model;
}

EvalResult evaluate_file(const std::string& path, const DataOptions& d, int threads) {
  torch::set_num_threads(std::max(1, threads));
  const auto info = inspect(path);
  const auto state = load(path);
  auto model = model_from_state(state);
  models::ModelConfig c;
  c.task = state.options.at("arch.task");
  c.name = state.options.at("arch.model");
  DataOptions data_options = d;
  data_options.train_limit = 1;
  if (c.task == "kjv-lm") {
    c.context = std::stoll(state.options.at("arch.context"));
    data_options.vocab_size = std::stoll(state.options.at("data.vocab_size"));
  }
  auto data = load_data(c, data_options);
  if (data.lm)
    DIFFQ_CHECK(data.vocab == std::stoll(state.options.at("arch.vocab")), "the text gives a vocabulary of ",
                data.vocab, " words but the model has ", state.options.at("arch.vocab"));
  EvalResult r;
  auto& m = r.metrics;
  m["file"] = path;
  m["task"] = c.task;
  m["model"] = c.name;
  auto run = state.options.find("run.method");
  m["method"] = run != state.options.end() ? run->second : state.method;
  m["params"] = models::count_parameters(*model);
  const auto score = evaluate(*model, data, "test");
  for (auto it = score.begin(); it != score.end(); ++it) m[it.key()] = it.value();
  m["test_examples"] = data.test_examples();
  m["fp32_mib"] = double(models::count_parameters(*model)) * 4.0 / 1048576.0;
  m["true_mib"] = state.true_mib();
  m["file_bytes"] = info.file_bytes;
  m["compression"] = double(models::count_parameters(*model)) * 4.0 / double(info.file_bytes);
  m["mean_bits"] = mean_bits(state);
  return r;
}

TrainResult run_training(const TrainConfig& config_in) {
  TrainConfig config = config_in;
  const MethodInfo& method = find_method(config.method);
  DIFFQ_CHECK(config.epochs >= 1, "--epochs must be at least 1");
  DIFFQ_CHECK(config.batch_size >= 1, "--batch-size must be at least 1");
  DIFFQ_CHECK(config.threads >= 1, "--threads must be at least 1");
  DIFFQ_CHECK(config.lr > 0, "--lr must be positive");
  DIFFQ_CHECK(config.schedule == "cosine" || config.schedule == "constant",
              "--schedule must be cosine or constant");
  DIFFQ_CHECK(config.method_options.bits >= 1 && config.method_options.bits <= 16,
              "--bits must be in 1..16");
  const EntropyCoding coding = coding_of(config.coding);
  if (config.method_options.bits_lr <= 0) config.method_options.bits_lr = method.default_own_lr(config.lr);
  torch::set_num_threads(config.threads);
  g_stop.store(false);

  const bool write = !config.out_dir.empty();
  const std::string dir = config.out_dir;
  const std::string ckpt = dir + "/checkpoint.pt", metrics_path = dir + "/metrics.json",
                    log_path = dir + "/log.jsonl", model_path = dir + "/model.diffq";
  bool resuming = false;
  if (write) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    DIFFQ_CHECK(!ec && fs::is_directory(dir), "cannot create the output directory '", dir, "'");
    const bool has_ckpt = fs::exists(ckpt), has_metrics = fs::exists(metrics_path);
    if (config.overwrite) {
      for (const auto& f : {ckpt, metrics_path, log_path, model_path}) fs::remove(f, ec);
    } else if (config.resume && has_ckpt) {
      resuming = true;
    } else if (config.resume && has_metrics) {
      // Finished run: report it.
      std::ifstream in(metrics_path);
      TrainResult r;
      r.metrics = nlohmann::json::parse(in);
      r.state = load(model_path);
      return r;
    } else {
      DIFFQ_CHECK(!has_ckpt, "'", dir, "' holds the checkpoint of an unfinished run: pass --resume to continue it or --overwrite to start over");
      DIFFQ_CHECK(!has_metrics, "'", dir, "' holds a finished run: pass --overwrite to replace it or choose another --out");
    }
  }

  TaskData data = load_data(config.model, config.data);
  torch::manual_seed(mix(config.seed, 0, 1));
  auto model = models::make_model(config.model);
  model->train();
  const int64_t n_params = models::count_parameters(*model);

  // The model's optimizer, then the quantizer and its own optimizer.
  torch::optim::Adam optimizer(model->parameters(),
                               torch::optim::AdamOptions(config.lr).weight_decay(config.weight_decay));
  std::unique_ptr<Quantizer> quantizer;
  if (method.make) quantizer = method.make(*model, config.method_options, config.seed);
  std::unique_ptr<torch::optim::Optimizer> own_opt;
  if (quantizer && !quantizer->parameters().empty())
    own_opt = quantizer->make_optimizer(config.method_options.bits_lr);

  const std::string ident = identity(config, method).dump();
  const int64_t n_train = data.train_examples();
  DIFFQ_CHECK(n_train >= 1, "no training example");
  const int64_t steps_per_epoch = (n_train + config.batch_size - 1) / config.batch_size;
  const int64_t total_steps = steps_per_epoch * config.epochs;

  Position pos;
  if (resuming) {
    pos = load_checkpoint(ckpt, ident, *model, quantizer.get(), optimizer, own_opt.get());
    if (method.replay_steps_on_resume && quantizer) {
      for (int64_t i = 0; i < pos.global_step; ++i) quantizer->training_step().finish();
      if (own_opt) own_opt->zero_grad();
      optimizer.zero_grad();
    } else if (quantizer) {
      quantizer->set_steps(pos.global_step);
    }
    // Keep only the log lines of the epochs the checkpoint has finished.
    std::vector<std::string> lines;
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line) && int64_t(lines.size()) < pos.log_lines) lines.push_back(line);
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    write_text_atomic(log_path, text);
  } else if (write) {
    write_text_atomic(log_path, "");
  }

  const double static_bits = quantizer ? mean_bits(quantizer->get_quantized_state()) : 32.0;
  Progress progress(config.progress, config.progress_stream ? *config.progress_stream : std::cerr,
                    data.lm);
  if (resuming)
    progress.message("resuming " + dir + " at epoch " + std::to_string(pos.epoch + 1) + ", step " +
                     std::to_string(pos.step) + "/" + std::to_string(steps_per_epoch));

  TrainResult result;
  auto checkpoint = [&] {
    if (write) save_checkpoint(ckpt, pos, ident, *model, quantizer.get(), optimizer, own_opt.get());
  };
  std::vector<torch::Tensor> model_params = model->parameters();

  for (; pos.epoch < config.epochs; ++pos.epoch, pos.step = 0, pos.score = Score()) {
    auto order = torch::randperm(n_train, generator(mix(config.seed, pos.epoch, 2)), torch::kInt64);
    progress.start_epoch(pos.epoch, config.epochs, steps_per_epoch, pos.step);
    while (pos.step < steps_per_epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      const int64_t b0 = pos.step * config.batch_size, b1 = std::min(n_train, b0 + config.batch_size);
      auto xy = batch(data, order.slice(0, b0, b1), config.augment, mix(config.seed, pos.global_step, 3));
      torch::manual_seed(mix(config.seed, pos.global_step, 4));  // any use of the global generator
      if (config.schedule == "cosine")
        set_lr(optimizer, config.lr * 0.5 * (1.0 + std::cos(M_PI * double(pos.global_step) / double(total_steps))));
      optimizer.zero_grad();
      if (own_opt) own_opt->zero_grad();
      torch::Tensor logits, loss;
      {
        std::unique_ptr<TrainingStep> step;
        if (quantizer) step.reset(new TrainingStep(quantizer->training_step()));
        logits = model->forward(xy.first);
        loss = loss_of(logits, xy.second);
        auto total = loss;
        if (method.penalized) total = total + config.method_options.penalty * quantizer->model_size();
        total.backward();
        if (step) step->finish();
      }
      DIFFQ_CHECK(std::isfinite(loss.item<double>()), "the training loss is not finite at step ",
                  pos.global_step, " (try a lower --lr)");
      if (config.clip > 0) torch::nn::utils::clip_grad_norm_(model_params, config.clip);
      optimizer.step();
      if (own_opt) own_opt->step();
      {
        torch::NoGradGuard g;
        const double n = double(xy.second.numel());
        pos.score.loss_sum += loss.item<double>() * n;
        pos.score.correct += logits.argmax(-1).eq(xy.second).sum().item<double>();
        pos.score.count += n;
      }
      ++pos.step;
      ++pos.global_step;
      pos.train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.update(pos.step, pos.score.loss_sum / pos.score.count,
                      pos.score.correct / pos.score.count, live_bits(quantizer.get(), static_bits));
      const bool stop_now = g_stop.load() || (config.stop_after_step > 0 && pos.global_step == config.stop_after_step);
      if (pos.step < steps_per_epoch &&
          ((config.checkpoint_every > 0 && pos.global_step % config.checkpoint_every == 0) || g_stop.load()))
        checkpoint();
      if (stop_now && pos.step < steps_per_epoch) {
        progress.finish_line();
        progress.message(write ? "stopped; resume with --resume (checkpoint " + ckpt + ")" : "stopped");
        result.interrupted = true;
        return result;
      }
    }
    // End of epoch: evaluate with the method's true quantized weights.
    nlohmann::json line;
    line["epoch"] = pos.epoch + 1;
    line["steps"] = pos.global_step;
    line["train_loss"] = pos.score.loss_sum / pos.score.count;
    if (data.lm) line["train_perplexity"] = std::exp(pos.score.loss_sum / pos.score.count);
    else line["train_accuracy"] = 100.0 * pos.score.correct / pos.score.count;
    nlohmann::json score;
    if (quantizer) {
      auto scope = quantizer->quantized_evaluation();
      score = evaluate(*model, data, "valid");
    } else {
      score = evaluate(*model, data, "valid");
    }
    if (data.lm) line["valid_perplexity"] = score["perplexity"];
    else line["test_accuracy"] = score["accuracy"];
    line["mean_bits"] = live_bits(quantizer.get(), static_bits);
    line["true_mib"] = quantizer ? quantizer->true_model_size() : double(n_params) * 4 / 1048576.0;
    line["train_seconds"] = pos.train_seconds;
    progress.end_epoch(line);
    if (write) {
      std::ofstream out(log_path, std::ios::app);
      out << line.dump() << "\n";
    }
    ++pos.log_lines;
    if (pos.epoch + 1 < config.epochs) {
      Position next = pos;
      ++next.epoch;
      next.step = 0;
      next.score = Score();
      std::swap(pos, next);
      checkpoint();
      std::swap(pos, next);
      const bool stop_now = g_stop.load() || (config.stop_after_step > 0 && pos.global_step == config.stop_after_step);
      if (stop_now) {
        progress.message(write ? "stopped; resume with --resume (checkpoint " + ckpt + ")" : "stopped");
        result.interrupted = true;
        return result;
      }
    }
  }

  // Final model: state, file, and the metrics measured on the model restored from it.
  const auto te0 = std::chrono::steady_clock::now();
  QuantizedState state = quantizer ? quantizer->get_quantized_state() : float_state(*model);
  add_arch(state, config);
  uint64_t file_bytes = 0;
  if (write) {
    SaveOptions so;
    so.entropy_coding(coding).threads(1);
    save(state, model_path, so);
    file_bytes = fs::file_size(model_path);
    state = load(model_path);
  } else {
    file_bytes = serialize(state, SaveOptions().entropy_coding(coding).threads(1)).size();
  }
  auto restored = model_from_state(state);
  const auto final_score = evaluate(*restored, data, "test");
  auto& m = result.metrics;
  m["task"] = config.model.task;
  m["model"] = config.model.name;
  m["method"] = config.method;
  m["params"] = n_params;
  if (data.lm) {
    m["perplexity"] = final_score["perplexity"];
    m["test_tokens"] = final_score["tokens"];
    m["test_unk_rate"] = data.test_unk_rate;
    m["vocab"] = data.vocab;
  } else {
    m["accuracy"] = final_score["accuracy"];
  }
  if (quantizer) {
    const auto fs_ = evaluate(*model, data, "test");  // the latent float weights
    m[data.lm ? "latent_float_perplexity" : "latent_float_accuracy"] =
        data.lm ? fs_["perplexity"] : fs_["accuracy"];
  }
  const double fp32_mib = double(n_params) * 4.0 / 1048576.0;
  m["fp32_mib"] = fp32_mib;
  m["true_mib"] = state.true_mib();
  m["file_bytes"] = file_bytes;
  m["compression"] = fp32_mib * 1048576.0 / double(file_bytes);
  m["true_compression"] = fp32_mib / state.true_mib();
  m["mean_bits"] = mean_bits(state);
  m["epochs"] = config.epochs;
  m["steps"] = pos.global_step;
  m["train_seconds"] = pos.train_seconds;
  m["eval_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - te0).count();
  m["train_examples"] = n_train;
  m["test_examples"] = data.test_examples();
  m["batch_size"] = config.batch_size;
  m["seed"] = config.seed;
  m["threads"] = config.threads;
  m["model_file"] = write ? model_path : "";
  nlohmann::json options = options_json(method, config.method_options);
  options["lr"] = config.lr;
  options["weight_decay"] = config.weight_decay;
  options["schedule"] = config.schedule;
  options["clip"] = config.clip;
  options["augment"] = config.augment;
  options["coding"] = config.coding;
  options["width"] = config.model.width;
  if (data.lm) {
    options["context"] = config.model.context;
    options["dim"] = config.model.dim;
    options["layers"] = config.model.layers;
    options["vocab_size"] = config.data.vocab_size;
  }
  options["train_limit"] = config.data.train_limit;
  options["test_limit"] = config.data.test_limit;
  m["options"] = options;
  progress.final_summary(m);
  if (write) {
    write_text_atomic(metrics_path, m.dump(2) + "\n");
    std::error_code ec;
    fs::remove(ckpt, ec);
  }
  result.state = std::move(state);
  return result;
}

// ------------------------------------------------------------------ compress
QuantizedState compress_torchscript(const std::string& script_path, int bits, double budget,
                                    int min_bits, int max_bits, double min_size) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(script_path);
  } catch (const std::exception& e) {
    throw Error("cannot load the TorchScript file '" + script_path + "': " + std::string(e.what()).substr(0, 300));
  }
  DiscoveryOptions d;
  d.min_size(min_size);
  auto quantize = [&](int b) {
    UniformQuantizer q(module, UniformOptions().bits(b).discovery(d));
    return q.get_quantized_state();
  };
  if (bits > 0) {
    DIFFQ_CHECK(bits <= 16, "--bits must be in 1..16");
    auto state = quantize(bits);
    state.options["source"] = fs::path(script_path).filename().string();
    return state;
  }
  DIFFQ_CHECK(budget > 0, "give --bits N or --budget B (mean bits)");
  DIFFQ_CHECK(min_bits >= 1 && min_bits <= max_bits && max_bits <= 16, "need 1 <= --min-bits <= --max-bits <= 16");
  DIFFQ_CHECK(budget >= min_bits, "--budget ", budget, " is below --min-bits ", min_bits);
  const auto reference = float_state(module);
  std::map<std::string, const TensorRecord*> original;
  for (const auto& r : reference.tensors) original[r.name] = &r;
  // Per candidate bit-width: the state, and per quantized tensor its squared error.
  std::vector<QuantizedState> states;
  std::vector<std::vector<double>> sse;  // [bits - min_bits][record]
  for (int b = min_bits; b <= max_bits; ++b) {
    states.push_back(quantize(b));
    std::vector<double> e;
    for (const auto& r : states.back().tensors) {
      double s = 0;
      if (r.encoding == Encoding::kUniform) {
        const auto v = dequantize(r);
        const auto& o = original.at(r.name)->values_f32;
        for (size_t i = 0; i < v.size(); ++i) s += double(v[i] - o[i]) * double(v[i] - o[i]);
      }
      e.push_back(s);
    }
    sse.push_back(std::move(e));
  }
  const auto& base = states.back();
  std::vector<int> alloc(base.tensors.size(), max_bits);
  double total_bits = 0, total_n = 0;
  for (const auto& r : base.tensors)
    if (r.encoding == Encoding::kUniform) {
      total_bits += double(max_bits) * double(r.numel());
      total_n += double(r.numel());
    }
  DIFFQ_CHECK(total_n > 0, "no tensor of '", script_path, "' is large enough to quantize (see --min-size)");
  // Greedy: lower by one bit the tensor whose squared error grows least per bit saved.
  while (total_bits / total_n > budget + 1e-12) {
    int best = -1;
    double best_cost = 0;
    for (size_t i = 0; i < alloc.size(); ++i) {
      if (base.tensors[i].encoding != Encoding::kUniform || alloc[i] <= min_bits) continue;
      const double cost = (sse[alloc[i] - 1 - min_bits][i] - sse[alloc[i] - min_bits][i]) /
                          double(base.tensors[i].numel());
      if (best < 0 || cost < best_cost) {
        best = int(i);
        best_cost = cost;
      }
    }
    if (best < 0) break;
    --alloc[best];
    total_bits -= double(base.tensors[best].numel());
  }
  QuantizedState state = base;
  for (size_t i = 0; i < alloc.size(); ++i) {
    if (base.tensors[i].encoding != Encoding::kUniform) continue;
    state.tensors[i] = states[alloc[i] - min_bits].tensors[i];
    state.options["alloc." + state.tensors[i].name] = std::to_string(alloc[i]);
  }
  state.options["bits"] = "mixed";
  std::ostringstream b;
  b << budget;
  state.options["budget"] = b.str();
  state.options["allocation"] = "greedy, squared quantization error per bit saved";
  state.options["source"] = fs::path(script_path).filename().string();
  return state;
}

void restore_torchscript(const std::string& model_file, const std::string& template_path,
                         const std::string& out_path) {
  const auto state = load(model_file);
  torch::jit::Module module;
  try {
    module = torch::jit::load(template_path);
  } catch (const std::exception& e) {
    throw Error("cannot load the TorchScript template '" + template_path + "': " + std::string(e.what()).substr(0, 300));
  }
  restore(module, state);
  const std::string tmp = out_path + ".tmp." + std::to_string(::getpid());
  module.save(tmp);
  DIFFQ_CHECK(std::rename(tmp.c_str(), out_path.c_str()) == 0, "cannot write '", out_path, "'");
}

}  // namespace train
}  // namespace diffq
