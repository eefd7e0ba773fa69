// The experiments' tasks: data, batches, loss, evaluation (see tasks.h).
#include "diffq/train/tasks.h"

#include <cmath>

#include <torch/torch.h>

#include "diffq/data/fashion_mnist.h"
#include "diffq/data/text.h"
#include "diffq/error.h"
#include "seeds.h"

namespace diffq {
namespace train {

int64_t TaskData::train_examples() const {
  return lm ? (train_tokens.numel() - 1) / context : train_x.size(0);
}

int64_t TaskData::test_examples() const { return lm ? test_tokens.numel() : test_x.size(0); }

namespace {

torch::Tensor token_tensor(const std::vector<int64_t>& v) {
  return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kInt64);
}

torch::Tensor first(const torch::Tensor& t, int64_t limit) {
  return limit > 0 ? t.slice(0, 0, std::min<int64_t>(t.numel(), limit)) : t;
}

TaskData load_text(models::ModelConfig& model, const DataOptions& d) {
  TaskData data;
  data.lm = true;
  auto corpus = data::make_corpus(data::load_kjv(d.text_path), d.vocab_size);
  data.context = model.context;
  data.train_tokens = first(token_tensor(corpus.train), d.train_limit > 0 ? d.train_limit * model.context + 1 : 0);
  data.valid_tokens = first(token_tensor(corpus.valid), d.test_limit);
  data.test_tokens = first(token_tensor(corpus.test), d.test_limit);
  DIFFQ_CHECK(data.train_tokens.numel() > model.context, "the train split has only ",
              data.train_tokens.numel(), " tokens, fewer than the context ", model.context, " + 1");
  DIFFQ_CHECK(data.test_tokens.numel() >= 2 && data.valid_tokens.numel() >= 2,
              "the text has no validation (Heb) or test (Jas..Rev) verses");
  data.vocab = static_cast<int64_t>(corpus.vocab.size());
  data.test_unk_rate = corpus.test_unk_rate;
  model.vocab = data.vocab;
  return data;
}

// Images shifted by up to 2 pixels (background padding) and flipped.
torch::Tensor augment_images(const torch::Tensor& x, uint64_t seed) {
  auto gen = seeded_generator(seed);
  const int64_t n = x.size(0);
  const float background = (0.f - 0.2860f) / 0.3530f;
  auto padded = torch::constant_pad_nd(x, {2, 2, 2, 2}, background);
  auto shifts = torch::randint(0, 5, {n, 2}, gen, torch::kInt64);
  auto flips = torch::randint(0, 2, {n}, gen, torch::kInt64);
  auto s = shifts.accessor<int64_t, 2>();
  auto f = flips.accessor<int64_t, 1>();
  std::vector<torch::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto img = padded[i].slice(1, s[i][0], s[i][0] + 28).slice(2, s[i][1], s[i][1] + 28);
    out.push_back(f[i] ? img.flip({2}) : img);
  }
  return torch::stack(out);
}

// Rows [w, we) of the windows of `context + 1` tokens starting every `context`.
torch::Tensor windows_of(const torch::Tensor& tokens, const torch::Tensor& window_index, int64_t context) {
  auto starts = (window_index * context).view({-1, 1});
  return tokens.index_select(0, (starts + torch::arange(context + 1, torch::kInt64)).view(-1))
      .view({window_index.size(0), context + 1});
}

double summed_nll(const ModelHandle& model, const torch::Tensor& seq, int64_t length) {
  auto logits = model.forward(seq.slice(1, 0, length));
  return torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                   seq.slice(1, 1, length + 1).reshape(-1), {}, at::Reduction::Sum)
      .item<double>();
}

// The counts of every rank, summed.
std::vector<double> summed(const EvaluationShard& shard, std::vector<double> values) {
  return shard.sum ? shard.sum(std::move(values)) : values;
}

bool mine(const EvaluationShard& shard, int64_t chunk) { return chunk % shard.world_size == shard.rank; }

nlohmann::json evaluate_images(const ModelHandle& model, const TaskData& data, const EvaluationShard& shard) {
  double correct = 0;
  const int64_t n = data.test_x.size(0);
  for (int64_t i = 0, chunk = 0; i < n; i += 500, ++chunk) {
    if (!mine(shard, chunk)) continue;
    const int64_t e = std::min(n, i + 500);
    auto pred = model.forward(data.test_x.slice(0, i, e)).argmax(1);
    correct += double(pred.eq(data.test_y.slice(0, i, e)).sum().item<int64_t>());
  }
  correct = summed(shard, {correct})[0];
  return {{"accuracy", 100.0 * correct / double(n)}};
}

nlohmann::json evaluate_text(const ModelHandle& model, const TaskData& data, const std::string& split,
                             const EvaluationShard& shard) {
  const auto& t = split == "valid" ? data.valid_tokens : data.test_tokens;
  const int64_t n = t.numel(), ctx = data.context;
  const int64_t windows = (n - 1) / ctx;
  double nll = 0, tokens = 0;
  int64_t chunk = 0;
  for (int64_t w = 0; w < windows; w += 64, ++chunk) {
    if (!mine(shard, chunk)) continue;
    const int64_t we = std::min(windows, w + 64);
    nll += summed_nll(model, windows_of(t, torch::arange(w, we, torch::kInt64), ctx), ctx);
    tokens += double((we - w) * ctx);
  }
  const int64_t rest = (n - 1) - windows * ctx;
  if (rest > 0 && mine(shard, chunk)) {
    nll += summed_nll(model, t.slice(0, windows * ctx, n).view({1, -1}), rest);
    tokens += double(rest);
  }
  const auto total = summed(shard, {nll, tokens});
  return {{"loss", total[0] / total[1]}, {"perplexity", std::exp(total[0] / total[1])}, {"tokens", int64_t(total[1])}};
}

}  // namespace

TaskData load_task_data(models::ModelConfig& model, const DataOptions& d) {
  if (model.task == "kjv-lm") return load_text(model, d);
  DIFFQ_CHECK(model.task == "fashion-mnist", "unknown task '", model.task, "' (fashion-mnist or kjv-lm)");
  TaskData data;
  auto train = data::load_fashion_mnist(d.fashion_dir, "train", d.train_limit);
  auto test = data::load_fashion_mnist(d.fashion_dir, "t10k", d.test_limit);
  data.train_x = train.images;
  data.train_y = train.labels;
  data.test_x = test.images;
  data.test_y = test.labels;
  return data;
}

std::pair<torch::Tensor, torch::Tensor> task_batch(const TaskData& data, const torch::Tensor& index,
                                                   bool augment, uint64_t seed) {
  if (data.lm) {
    auto seq = windows_of(data.train_tokens, index, data.context);
    return {seq.slice(1, 0, data.context), seq.slice(1, 1, data.context + 1)};
  }
  auto x = data.train_x.index_select(0, index);
  if (augment) x = augment_images(x, seed);
  return {x, data.train_y.index_select(0, index)};
}

torch::Tensor task_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape(-1));
}

nlohmann::json evaluate_task(const ModelHandle& model, const TaskData& data, const std::string& split,
                             const EvaluationShard& shard) {
  DIFFQ_CHECK(shard.world_size >= 1 && shard.rank >= 0 && shard.rank < shard.world_size, "evaluation shard ",
              shard.rank, " of ", shard.world_size, " does not exist");
  torch::NoGradGuard no_grad;
  ModeGuard eval_mode(model, false);
  return data.lm ? evaluate_text(model, data, split, shard) : evaluate_images(model, data, shard);
}

}  // namespace train
}  // namespace diffq
