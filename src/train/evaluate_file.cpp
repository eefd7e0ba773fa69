// Evaluation of a model file on its task (see experiment.h).
#include <filesystem>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/number_text.h"
#include "diffq/restore.h"
#include "diffq/train/experiment.h"
#include "diffq/train/tasks.h"
#include "run_model.h"
#include "run_record.h"

namespace diffq {
namespace train {

std::shared_ptr<models::Model> model_from_state(const QuantizedState& state) {
  const auto config = models::model_config_from_options(state.options);
  check_arch_fits_file(config, state);
  auto model = models::make_model(config);
  restore(*model, state);
  return model;
}

EvalResult evaluate_file(const std::string& path, const DataOptions& d, int threads, const std::string& model_file) {
  DIFFQ_CHECK(threads >= 1 && threads <= kMaxThreads, "--threads must be between 1 and ", kMaxThreads, ", not ",
              threads);
  DIFFQ_CHECK(d.test_limit >= 0, "--test-limit must be zero (all) or a positive number of examples, not ",
              d.test_limit);
  torch::set_num_threads(threads);
  const auto state = load(path);
  const uint64_t file_bytes = std::filesystem::file_size(path);
  const auto model = restored_model(state, model_file);
  models::ModelConfig c = models::model_config_from_options(state.options);
  DataOptions data_options = d;
  data_options.train_limit = 1;
  if (c.task == "kjv-lm") {
    auto it = state.options.find("data.vocab_size");
    DIFFQ_CHECK(it != state.options.end(), "the model file has no 'data.vocab_size' option");
    data_options.vocab_size = parse_integer(it->second, "data.vocab_size");
  }
  const int64_t model_vocab = c.vocab;
  auto data = load_task_data(c, data_options);
  if (data.lm)
    DIFFQ_CHECK(data.vocab == model_vocab, "the text gives a vocabulary of ", data.vocab,
                " words but the model has ", model_vocab);
  EvalResult r;
  auto& m = r.metrics;
  m["file"] = path;
  m["task"] = c.task;
  m["model"] = c.name;
  auto run = state.options.find("run.method");
  m["method"] = run != state.options.end() ? run->second : state.method;
  m["params"] = count_parameters(model.handle.ref);
  m.update(evaluate_task(model.handle, data, "test"));
  m["test_examples"] = data.test_examples();
  m.update(size_metrics(state, file_bytes));
  return r;
}

}  // namespace train
}  // namespace diffq
