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

/// What a held-out batch's error measures (each in [0, 1]).
enum class HeldOutError {
  /// Top-1 error: the fraction of examples misclassified (spec section 5).
  kTop1,
  /// Soft error: 1 − the mean probability the model gives the true class.
  /// Continuous in the logits, so two configurations that misclassify the
  /// same examples still differ: far less noisy on a small batch (the
  /// default of `diffq search`: docs/results/README.md compares the two).
  kSoft,
};

/// Options of `search`.
struct SearchOptions {
  /// What the budget constrains.
  CostKind cost = CostKind::kBitOps;
  /// The budget, in the cost's unit. At least the cost of the smallest
  /// reachable configuration (BitOPs: every searchable layer at its smallest
  /// candidates; size: the smallest weight candidates, activations at the
  /// start), else `search` throws `diffq::Error` naming both numbers.
  double budget = 0;
  /// Every searchable layer starts at (s, s), s = max(start_bits, b* + 1)
  /// with b* below, each clamped into its candidates (the nearest
  /// candidate; ties: the lower). The raise to b* + 1 lets a budget at or
  /// above the cost of uniform W5A5 still be searched from above.
  int start_bits = 5;
  /// score = error_weight · err / err_max − (1 − cost / cost_max).
  double error_weight = 1.5;
  /// BitOPs budgets: phase 1 (weights only) runs until the cost is at most
  /// this fraction of the cost of (weights b*, activations s),
  /// where b* is the uniform bit-width whose WbAb cost is nearest the
  /// budget (or until the budget itself is met).
  double phase_one_margin = 0.95;
  /// Each round tries a step up of every layer as well as a step down (the
  /// spec and the public code). False: steps down only, a cheaper search
  /// that cannot trade bits between layers.
  bool up_moves = true;
  /// After the budget is met, keep applying the best single step up that
  /// stays within it (an extension: lands the cost close to the budget).
  bool fill = true;
  /// Final check (an extension): the uniform configurations W b A b whose
  /// cost is within [0.9 · budget, budget] are scored against the searched
  /// one on `compare_rounds` fresh rounds (mean error, the same rounds for
  /// all), and a uniform one that is strictly better is returned instead: a
  /// greedy search on noisy held-out batches can end below the trivial
  /// answer, and the check costs a few evaluations. 0 = no check.
  int64_t compare_rounds = 4;
  /// Scoring rounds before the search gives up with an error.
  int64_t max_iterations = 100000;
};

/// The top-1 error in [0, 1] of a configuration; every call with the same
/// `iteration` must use the same held-out batch (a fresh one per iteration).
using EvaluateConfig = std::function<double(const BitConfig& config, int64_t iteration)>;
/// The cost of a configuration (the unit of `SearchOptions::budget`).
using CostOfConfig = std::function<double(const BitConfig& config)>;

/// The phases of `search`, in order.
enum class SearchPhase {
  /// Weight bits only (BitOPs: down to the phase-one target; size: down to the budget).
  kWeights,
  /// Activation bits only, down to the budget (BitOPs).
  kActivations,
  /// Both, down to the budget: only when activation moves alone cannot lower the cost any more.
  kWeightsAndActivations,
  /// Steps up that stay within the budget (`SearchOptions::fill`).
  kFill,
};
/// "weights", "activations", "weights and activations" or "fill".
const char* search_phase_name(SearchPhase phase);

/// One applied move.
struct SearchMove {
  /// Scoring round (the `iteration` its candidates were evaluated with).
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
  /// The phase it belongs to.
  SearchPhase phase = SearchPhase::kWeights;
};

/// What the search found.
struct SearchResult {
  /// The bits every searchable layer started at (see `SearchOptions::start_bits`).
  int start_bits = 0;
  /// The configuration (cost ≤ budget).
  BitConfig config;
  /// Its cost.
  double cost = 0;
  /// The moves applied, in order.
  std::vector<SearchMove> moves;
  /// Calls of the evaluation callback.
  int64_t evaluations = 0;
  /// Mean error of the greedy search's configuration over the final check's
  /// rounds (−1 without a check, or when no uniform configuration qualified).
  double searched_error = -1;
  /// The best qualifying uniform configuration's bits b (W b A b) and its
  /// mean error over the same rounds (0 and −1 when none qualified).
  int uniform_bits = 0;
  double uniform_error = -1;
  /// True when that uniform configuration was strictly better and is the
  /// returned `config` (the greedy one's moves are still in `moves`).
  bool uniform_kept = false;
};

/// Greedy inference-only search (spec one-shot-mpq.md section 5), from
/// every searchable layer at (s, s), s = max(start_bits, b* + 1).
///
/// Phases. BitOPs budgets: (1) weight bits only, until the cost is at most
/// `phase_one_margin` × the cost of (W b*, A s), b* being the
/// uniform bit-width b whose W b A b configuration costs nearest the budget
/// (ties: the lower b; the public code reads b* from a hard-coded ResNet-18
/// table of budgets, `bops_map_to_bits`, which this generalises), or until
/// the budget is met, or until no weight move lowers the cost; (2)
/// activation bits only, until the cost is within the budget; (2b) only if
/// activation moves can no longer lower the cost, both kinds. Size budgets:
/// weight bits only, one phase. Then (3) fill, below.
///
/// A round: every searchable layer tries one step down and (`up_moves`) one
/// step up within its current candidates, for the phase's tensors; a move
/// to a configuration already visited is skipped (no cycles, so the search
/// always ends). Every candidate is evaluated with the round's iteration
/// number and scored as error_weight · err/err_max − (1 − cost/cost_max),
/// maxima over the round's candidates (a zero maximum makes its term 0);
/// the lowest score is applied (ties: the lower layer, weights before
/// activations, down before up). A phase ends at its target, or when none
/// of its moves lowers the cost.
///
/// Fill (an extension, `fill`): the acceptance criterion wants the final
/// cost in [0.9·B, B], and greedy steps of one layer can undershoot the
/// budget by a whole layer's step; so while some single step up (weights or
/// activations; size budgets: weights) keeps the cost within the budget,
/// those steps are scored the same way on a fresh round and the best one
/// applied.
///
/// Final check (`compare_rounds` > 0): see `SearchOptions::compare_rounds`.
///
/// Deterministic given the callbacks. Throws `diffq::Error` when the
/// candidates are not strictly ascending, the budget is below the smallest
/// reachable cost, an evaluation leaves [0, 1], no move can lower the cost
/// before the budget is met, or after `max_iterations` rounds.
SearchResult search(const Layers& layers, const EvaluateConfig& evaluate, const CostOfConfig& cost_of,
                    const SearchOptions& options);

}  // namespace oneshot
}  // namespace diffq
