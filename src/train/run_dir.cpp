// The output directory of an experiment run (see run_dir.h).
#include "run_dir.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "diffq/error.h"
#include "diffq/format.h"
#include "files.h"
#include "run_lock.h"
#include "run_record.h"

namespace fs = std::filesystem;

namespace diffq {
namespace train {

RunDirectory::RunDirectory(std::string dir) : dir_(std::move(dir)) {
  checkpoint_ = dir_ + "/checkpoint.pt";
  metrics_ = dir_ + "/metrics.json";
  log_ = dir_ + "/log.jsonl";
  model_ = dir_ + "/model.diffq";
}

RunDirectory::Start RunDirectory::prepare(const TrainConfig& config) {
  if (!writes()) return Start::kFresh;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  DIFFQ_CHECK(!ec && fs::is_directory(dir_), "cannot create the output directory '", dir_, "'");
  lock_ = std::make_shared<RunLock>(dir_);
  remove_dead_temporaries(dir_);
  const bool has_checkpoint = fs::exists(checkpoint_), has_metrics = fs::exists(metrics_);
  if (config.overwrite) {
    for (const auto& f : {checkpoint_, metrics_, log_, model_}) fs::remove(f, ec);
    return Start::kFresh;
  }
  if (config.resume && has_checkpoint) return Start::kResume;
  if (config.resume && has_metrics) {
    const auto diff =
        identity_differences(run_identity(recorded_config(load(model_))), run_identity(config), "finished run");
    DIFFQ_CHECK(diff.empty(), "'", dir_, "' holds a finished run of a different configuration; differences:", diff,
                " (use --overwrite to start over or choose another --out)");
    return Start::kFinished;
  }
  DIFFQ_CHECK(!has_checkpoint, "'", dir_,
              "' holds the checkpoint of an unfinished run: pass --resume to continue it or --overwrite to start over");
  DIFFQ_CHECK(!has_metrics, "'", dir_,
              "' holds a finished run: pass --overwrite to replace it or choose another --out");
  return Start::kFresh;
}

void RunDirectory::reset_log(int64_t lines) const {
  if (!writes()) return;
  std::string text, line;
  std::ifstream in(log_);
  for (int64_t n = 0; n < lines && std::getline(in, line); ++n) text += line + "\n";
  write_text_atomic(log_, text);
}

void RunDirectory::append_log(const nlohmann::json& line) const {
  if (!writes()) return;
  std::ofstream out(log_, std::ios::app);
  out << line.dump() << "\n";
  DIFFQ_CHECK(out.good(), "cannot append to '", log_, "'");
}

void RunDirectory::finish(const nlohmann::json& metrics) const {
  if (!writes()) return;
  write_text_atomic(metrics_, metrics.dump(2) + "\n");
  std::error_code ec;
  fs::remove(checkpoint_, ec);
}

nlohmann::json RunDirectory::finished_metrics() const {
  std::ifstream in(metrics_);
  auto j = nlohmann::json::parse(in, nullptr, false);
  DIFFQ_CHECK(!j.is_discarded(), "'", metrics_, "' is not valid JSON");
  return j;
}

}  // namespace train
}  // namespace diffq
