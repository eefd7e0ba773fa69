#pragma once
// The output directory of an experiment run (private): its files, how a
// run starts in it (fresh, resumed, already finished), and its log.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/train/config.h"

namespace diffq {
namespace train {

class RunLock;

/// The files of a run directory. An empty `dir` writes nothing.
class RunDirectory {
 public:
  /// How a run starts.
  enum class Start { kFresh, kResume, kFinished };

  /// Paths under `dir`.
  explicit RunDirectory(std::string dir);
  /// True when the run writes files.
  bool writes() const { return !dir_.empty(); }
  /// Creates the directory, takes its lock (held while this object or a
  /// copy lives; refused when another process holds it), removes the
  /// temporaries of killed runs and decides how the run starts per
  /// --resume / --overwrite; refuses to replace a run silently, and to
  /// "resume" a finished run of a different configuration.
  Start prepare(const TrainConfig& config);
  /// Keeps the first `lines` lines of the log (those of the checkpoint's
  /// finished epochs); an empty log for a fresh run.
  void reset_log(int64_t lines) const;
  /// Appends one JSON line to the log.
  void append_log(const nlohmann::json& line) const;
  /// Writes metrics.json (atomically) and removes the checkpoint.
  void finish(const nlohmann::json& metrics) const;
  /// The metrics of a finished run.
  nlohmann::json finished_metrics() const;

  /// The directory.
  const std::string& dir() const { return dir_; }
  /// checkpoint.pt
  const std::string& checkpoint() const { return checkpoint_; }
  /// model.diffq
  const std::string& model() const { return model_; }

 private:
  std::string dir_, checkpoint_, metrics_, log_, model_;
  std::shared_ptr<RunLock> lock_;
};

}  // namespace train
}  // namespace diffq
