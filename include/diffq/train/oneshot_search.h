#pragma once
/// \file oneshot_search.h
/// `diffq search`: configurations of a finished one-shot run found for
/// budgets by the inference-only search, each recalibrated, evaluated on
/// the test set and written as an ordinary model file (and its
/// configuration as JSON, the input of method `lsq-mixed`).

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "diffq/oneshot/bit_config.h"
#include "diffq/oneshot/search.h"
#include "diffq/train/config.h"

namespace diffq {
namespace train {

/// Options of `run_search`.
struct SearchRunOptions {
  /// The one-shot run's directory (model.diffq and coupled.pt).
  std::string run_dir;
  /// BitOPs budgets (per example): numbers, or "WbAa" for the cost of that
  /// uniform configuration.
  std::vector<std::string> bitops_budgets;
  /// Size budgets: the quantized weights' size in MiB (numbers), or "WbAb".
  std::vector<std::string> mib_budgets;
  /// Also search this many BitOPs budgets evenly spaced from the cost of
  /// uniform W2A2 to that of W6A6 (the ends included); 0 = none.
  int curve = 0;
  /// Also read out the uniform configurations W2A2 ... W6A6.
  bool uniform = false;
  /// Examples of each held-out batch (one per search round, cycled).
  int64_t batch_size = 256;
  /// Distinct held-out batches.
  int64_t held_out_batches = 4;
  /// Training batches (of `batch_size`) of the BatchNorm recalibration.
  /// (32 instead of 8 moved the one-shot experiment's read-outs by −1.8 to
  /// +0.9 pt at W3A3 and ±0.3 pt at W4A4, with no gain on average:
  /// docs/results/one_shot.md.)
  int64_t calibration_batches = 8;
  /// Data (the run's limits are kept; the directories come from here).
  DataOptions data;
  /// Intra-op threads.
  int threads = 1;
  /// What the search's held-out error measures.
  oneshot::HeldOutError metric = oneshot::HeldOutError::kSoft;
  /// The search's own options (`cost` and `budget` are set per point).
  oneshot::SearchOptions search;
  /// Output directory (default: `run_dir`/search).
  std::string out_dir;
};

/// One configuration found (or read out) and its evaluation.
struct SearchPoint {
  /// "bitops=<budget>", "mib=<budget>" or "W4A4".
  std::string label;
  /// Budget in its unit (0 for uniform read-outs).
  double budget = 0;
  /// The configuration.
  oneshot::BitConfig config;
  /// Its BitOPs per example.
  double bitops = 0;
  /// Its weights' size in MiB (quantized weights only).
  double weight_mib = 0;
  /// Mean weight bits over the quantized weights.
  double mean_weight_bits = 0;
  /// Test accuracy (%) with recalibrated BatchNorm, zero retraining.
  double accuracy = 0;
  /// The search's final check against uniform configurations (see
  /// `oneshot::SearchResult`; read-outs: no check).
  double searched_error = -1;
  int uniform_bits = 0;
  double uniform_error = -1;
  bool uniform_kept = false;
  /// Evaluations the search made (0 for read-outs).
  int64_t evaluations = 0;
  /// Seconds of search, recalibration and evaluation.
  double seconds = 0;
  /// The model file written.
  std::string model_file;
  /// The configuration's JSON file written.
  std::string config_file;
};

/// Runs the searches and read-outs of `options`; writes each point's model
/// file and configuration, and `points.json`, `curve.dat` (BitOPs in
/// millions, accuracy) in the output directory. Throws `diffq::Error` for a
/// run that is not a finished one-shot run, or an impossible budget.
std::vector<SearchPoint> run_search(const SearchRunOptions& options);

/// A point as JSON (configuration included).
nlohmann::json to_json(const SearchPoint& point);

}  // namespace train
}  // namespace diffq
