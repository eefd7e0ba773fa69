#pragma once
/// \file search.h
/// The inference-only search of one-shot mixed precision (spec
/// one-shot-mpq.md section 5), as pure logic over two callbacks: the error
/// of a configuration on a held-out batch, and its cost. Torch-free.

#include <cstdint>
#include <functional>
#include <vector>

#include "diffq/oneshot/bit_config.h"

namespace diffq {
namespace oneshot {

/// Options of `search`.
struct SearchOptions {
  /// What the budget constrains.
  CostKind cost = CostKind::kBitOps;
  /// The budget, in the cost's unit. At least the cost of the smallest
  /// configuration.
  double budget = 0;
  /// Every searchable layer starts at (start_bits, start_bits), each
  /// clamped into its candidates.
  int start_bits = 5;
  /// score = error_weight · err / err_max − (1 − cost / cost_max).
  double error_weight = 1.5;
  /// BitOPs budgets: phase 1 (weights only) runs until the cost is at most
  /// this fraction of the cost of (weights b*, activations start_bits),
  /// where b* is the uniform bit-width whose WbAb cost is nearest the budget.
  double phase_one_margin = 0.95;
  /// After the budget is met, keep applying the best single up-move that
  /// stays within it (brings the cost close to the budget).
  bool fill = true;
  /// Scoring rounds before the search gives up with an error.
  int64_t max_iterations = 100000;
};

/// The top-1 error in [0, 1] of a configuration; every call with the same
/// `iteration` must use the same held-out batch (a fresh one per iteration).
using EvaluateConfig = std::function<double(const BitConfig& config, int64_t iteration)>;
/// The cost of a configuration (the unit of `SearchOptions::budget`).
using CostOfConfig = std::function<double(const BitConfig& config)>;

/// One applied move.
struct SearchMove {
  /// Scoring round.
  int64_t iteration = 0;
  /// Layer index.
  size_t layer = 0;
  /// Weight bits moved (else activation bits).
  bool weight = true;
  /// Bits before.
  int from = 0;
  /// Bits after.
  int to = 0;
  /// Error of the configuration after the move.
  double error = 0;
  /// Cost after the move.
  double cost = 0;
  /// Its score.
  double score = 0;
};

/// What the search found.
struct SearchResult {
  /// The configuration (cost ≤ budget).
  BitConfig config;
  /// Its cost.
  double cost = 0;
  /// The moves applied, in order.
  std::vector<SearchMove> moves;
  /// Calls of the evaluation callback.
  int64_t evaluations = 0;
};

/// Greedy search from (start, start): BitOPs budgets move weight bits
/// (phase 1), then activation bits until the cost is within the budget
/// (phase 2; both kinds if activations alone cannot get there); size
/// budgets move weight bits only. Each round tries one step down of every
/// searchable layer (never back to a configuration already visited), scores
/// each on the round's batch and applies the best (ties: the lower layer).
/// Then the fill phase tries the single steps up that stay within the
/// budget, the same way. (The spec tries a step up in every round too; with
/// the score's cost term relative to the round's largest cost, a step up of
/// lower error wins whenever the costs are close and the search wanders: on
/// the toy table of the tests, 100000 rounds without reaching the budget.
/// Steps up are therefore kept for the fill phase.) Deterministic given
/// the callbacks. Throws `diffq::Error` when the budget is below the
/// smallest configuration's cost, when no legal move remains, or after
/// `max_iterations` rounds.
SearchResult search(const Layers& layers, const EvaluateConfig& evaluate, const CostOfConfig& cost_of,
                    const SearchOptions& options);

}  // namespace oneshot
}  // namespace diffq
