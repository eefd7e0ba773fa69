// `diffq search`: configurations of a finished one-shot run for budgets.
#include <cstdio>
#include <map>
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "diffq/oneshot/bit_config.h"
#include "diffq/error.h"
#include "diffq/train/oneshot_search.h"

namespace diffq {
namespace cli {

namespace {

void print_points(const std::vector<train::SearchPoint>& points, std::ostream& out) {
  char line[400];
  std::snprintf(line, sizeof line, "%-16s %12s %10s %9s %9s %7s  %s\n", "point", "MBitOPs", "weight MiB", "mean bits",
                "accuracy", "seconds", "configuration");
  out << line;
  for (const auto& p : points) {
    std::snprintf(line, sizeof line, "%-16s %12.3f %10.5f %9.3f %8.2f%% %7.1f  %s\n", p.label.c_str(), p.bitops / 1e6,
                  p.weight_mib, p.mean_weight_bits, p.accuracy, p.seconds, oneshot::describe(p.config).c_str());
    out << line;
    if (p.uniform_bits > 0) {
      std::snprintf(line, sizeof line, "%-16s   final check: searched held-out error %.4f, uniform W%dA%d %.4f: %s\n",
                    "", p.searched_error, p.uniform_bits, p.uniform_bits, p.uniform_error,
                    p.uniform_kept ? "the uniform configuration is kept" : "the searched configuration is kept");
      out << line;
    }
  }
}

}  // namespace

Command add_search(CLI::App& app) {
  struct Flags {
    train::SearchRunOptions options;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto& o = f->options;
  auto* s = app.add_subcommand(
      "search",
      "one-shot mixed precision: find configurations of a finished `--method oneshot` run for budgets (no "
      "retraining), recalibrate BatchNorm, evaluate, write each as a model file and a configuration");
  s->add_option("run", o.run_dir, "the one-shot run's directory")->required();
  s->add_option("--budget-bitops", o.bitops_budgets,
                "BitOPs budget per example: a number, or WbAa for the cost of that uniform configuration (repeatable)");
  s->add_option("--budget-mib", o.mib_budgets, "budget of the quantized weights' size in MiB, or WbAb (repeatable)");
  s->add_option("--curve", o.curve, "search N BitOPs budgets evenly spaced from uniform W2A2 to W6A6")
      ->check(CLI::Range(0, 1000));
  s->add_flag("--uniform", o.uniform, "also read out the uniform configurations W2A2 ... W6A6");
  s->add_option("--batch-size", o.batch_size, "images per held-out batch (one batch per search round)")
      ->capture_default_str();
  s->add_option("--held-out-batches", o.held_out_batches, "distinct held-out batches, cycled")->capture_default_str();
  s->add_option("--calibration-batches", o.calibration_batches, "training batches of the BatchNorm recalibration")
      ->capture_default_str();
  s->add_option("--error-weight", o.search.error_weight, "score = w·err/err_max − (1 − cost/cost_max): w")
      ->capture_default_str()->check(CLI::PositiveNumber);
  s->add_flag("--down-only", [f](int64_t) { f->options.search.up_moves = false; },
              "descent rounds try steps down only (steps up only in the final fill phase)");
  s->add_option("--metric", o.metric, "the held-out error the search scores: soft (1 − mean probability of the true class: "
                "less noisy, the default) or top1 (the misclassified fraction, the spec's)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, oneshot::HeldOutError>{
          {"top1", oneshot::HeldOutError::kTop1}, {"soft", oneshot::HeldOutError::kSoft}}));
  s->add_option("--compare-rounds", o.search.compare_rounds,
                "final check: held-out rounds on which the searched configuration is compared with the uniform "
                "ones of cost within [0.9 B, B] (a strictly better uniform one is kept); 0 = no check")
      ->capture_default_str()->check(CLI::Range(0, 1000));
  s->add_option("--data-dir", o.data.fashion_dir, "Fashion-MNIST directory")->capture_default_str();
  s->add_option("--threads", o.threads, "intra-op threads")->capture_default_str()->check(CLI::Range(1, 256));
  s->add_option("--out", o.out_dir, "output directory (default RUN/search)");
  s->add_flag("--json", f->json, "JSON output");
  return {s, [f](std::ostream& out, std::ostream&) {
            const auto& o = f->options;
            if (o.bitops_budgets.empty() && o.mib_budgets.empty() && o.curve == 0 && !o.uniform)
              throw diffq::Error("diffq search needs --budget-bitops, --budget-mib, --curve or --uniform");
            const auto points = train::run_search(o);
            if (f->json) {
              nlohmann::json all = nlohmann::json::array();
              for (const auto& p : points) all.push_back(train::to_json(p));
              out << all.dump(2) << "\n";
            } else {
              print_points(points, out);
            }
            return 0;
          }};
}

}  // namespace cli
}  // namespace diffq
