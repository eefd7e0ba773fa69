// The run configuration's one JSON form (see include/diffq/train/config.h).
#include "diffq/train/config.h"

#include <cmath>
#include <type_traits>

#include "diffq/error.h"
#include "diffq/format.h"
#include "json_fields.h"

namespace diffq {
namespace train {

namespace {

// Every field of TrainConfig that defines what is trained, by name: the one
// list that JSON writing and reading use. (`options` is handled apart.)
template <typename Config, typename Visit>
void for_each_field(Config& c, Visit&& visit) {
  visit("task", c.model.task);
  visit("model", c.model.name);
  visit("width", c.model.width);
  visit("norm", c.model.norm);
  visit("context", c.model.context);
  visit("dim", c.model.dim);
  visit("layers", c.model.layers);
  visit("model_file", c.model_file);
  visit("init", c.init);
  visit("method", c.method);
  visit("vocab_size", c.data.vocab_size);
  visit("train_limit", c.data.train_limit);
  visit("test_limit", c.data.test_limit);
  visit("epochs", c.epochs);
  visit("batch_size", c.batch_size);
  visit("lr", c.lr);
  visit("weight_decay", c.weight_decay);
  visit("schedule", c.schedule);
  visit("clip", c.clip);
  visit("augment", c.augment);
  visit("recalibrate", c.recalibrate);
  visit("seed", c.seed);
  visit("coding", c.coding);
}

}  // namespace

nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  write_fields(j, c, [](const auto& obj, auto&& visit) { for_each_field(obj, visit); });
  j["options"] = to_json(c.method_options);
  return j;
}

TrainConfig config_from_json(const nlohmann::json& j, const TrainConfig& defaults) {
  TrainConfig c = defaults;
  read_fields(
      j, c, [](auto& obj, auto&& visit) { for_each_field(obj, visit); },
      [&](const std::string& key, const nlohmann::json& value) {
        if (key != "options") return false;
        c.method_options = method_options_from_json(value);
        return true;
      },
      "run option");
  return c;
}

nlohmann::json run_identity(const TrainConfig& c) {
  nlohmann::json j = to_json(c);
  j.erase("coding");
  j["options"] = options_json(find_method(c.method), c.method_options);
  return j;
}

void check_config(const TrainConfig& c) {
  const auto& method = find_method(c.method);
  const auto finite = [](const char* flag, double v) {
    DIFFQ_CHECK(std::isfinite(v), flag, " must be a finite number, not ", v);
  };
  DIFFQ_CHECK(c.epochs >= 1, "--epochs must be at least 1, not ", c.epochs);
  DIFFQ_CHECK(c.batch_size >= 1, "--batch-size must be at least 1, not ", c.batch_size);
  DIFFQ_CHECK(c.threads >= 1 && c.threads <= kMaxThreads, "--threads must be between 1 and ", kMaxThreads,
              ", not ", c.threads);
  finite("--lr", c.lr);
  DIFFQ_CHECK(c.lr > 0, "--lr must be positive, not ", c.lr);
  finite("--weight-decay", c.weight_decay);
  DIFFQ_CHECK(c.weight_decay >= 0, "--weight-decay must be zero or positive, not ", c.weight_decay);
  finite("--clip", c.clip);
  DIFFQ_CHECK(c.clip >= 0, "--clip must be zero (off) or a positive gradient norm, not ", c.clip);
  DIFFQ_CHECK(c.recalibrate >= 0, "--recalibrate must be zero or a positive number of batches, not ", c.recalibrate);
  DIFFQ_CHECK(c.checkpoint_every >= 1, "--checkpoint-every must be at least 1 step, not ", c.checkpoint_every);
  DIFFQ_CHECK(c.stop_after_step >= 0, "--stop-after-step must be zero or positive");
  DIFFQ_CHECK(c.data.train_limit >= 0, "--train-limit must be zero (all) or a positive number of examples, not ",
              c.data.train_limit);
  DIFFQ_CHECK(c.data.test_limit >= 0, "--test-limit must be zero (all) or a positive number of examples, not ",
              c.data.test_limit);
  DIFFQ_CHECK(c.data.vocab_size >= 2, "--vocab-size must be at least 2, not ", c.data.vocab_size);
  finite("--width", c.model.width);
  DIFFQ_CHECK(c.model.width > 0, "--width must be positive, not ", c.model.width);
  DIFFQ_CHECK(c.model.context >= 1, "--context must be at least 1, not ", c.model.context);
  DIFFQ_CHECK(c.model.dim >= 4, "--dim must be at least 4, not ", c.model.dim);
  DIFFQ_CHECK(c.model.layers >= 1, "--layers must be at least 1, not ", c.model.layers);
  DIFFQ_CHECK(c.schedule == "cosine" || c.schedule == "constant",
              "--schedule must be cosine or constant, not '", c.schedule, "'");
  parse_entropy_coding(c.coding);
  check_distributed_options(c.distributed);
  check_method_options(method, c.method_options);
}

}  // namespace train
}  // namespace diffq
