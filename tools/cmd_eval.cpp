// `diffq eval`: rebuild a model from its file alone and evaluate it.
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "diffq/train/trainer.h"

namespace diffq {
namespace cli {

namespace {

void print_eval(const nlohmann::json& m, std::ostream& out) {
  out << m["file"].get<std::string>() << ": " << m["task"].get<std::string>() << " / "
      << m["model"].get<std::string>() << " / " << m["method"].get<std::string>() << "\n";
  char line[300];
  if (m.contains("accuracy"))
    std::snprintf(line, sizeof line, "test accuracy %.2f %% on %lld images\n", m["accuracy"].get<double>(),
                  (long long)m["test_examples"].get<int64_t>());
  else
    std::snprintf(line, sizeof line, "test perplexity %.2f on %lld tokens\n", m["perplexity"].get<double>(),
                  (long long)m["tokens"].get<int64_t>());
  out << line;
  std::snprintf(line, sizeof line,
                "size: float32 %.4f MiB, true %.4f MiB, file %llu bytes (%.1fx smaller), mean bits %.2f\n",
                m["fp32_mib"].get<double>(), m["true_mib"].get<double>(),
                (unsigned long long)m["file_bytes"].get<uint64_t>(), m["compression"].get<double>(),
                m["mean_bits"].get<double>());
  out << line;
}

}  // namespace

Command add_eval(CLI::App& app) {
  struct Flags {
    std::string file, model_file;
    train::DataOptions data;
    int threads = 1;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* ev = app.add_subcommand("eval", "restore a model from its file alone and evaluate it on its task's test set");
  ev->add_option("file", f->file, "model file written by `diffq train`")->required();
  ev->add_option("--data-dir", f->data.fashion_dir, "Fashion-MNIST directory")->capture_default_str();
  ev->add_option("--text", f->data.text_path, "kjv-lm text (default: run `bible`)");
  ev->add_option("--test-limit", f->data.test_limit, "evaluate on this many test images / tokens (0 = all)");
  ev->add_option("--threads", f->threads, "intra-op threads, 1..256")->capture_default_str();
  ev->add_option("--model-file", f->model_file,
                 "TorchScript model giving the architecture (required for a model trained with --model-file)");
  ev->add_flag("--json", f->json, "JSON output");
  return {ev, [f](std::ostream& out, std::ostream&) {
            const auto r = train::evaluate_file(f->file, f->data, f->threads, f->model_file);
            if (f->json) out << r.metrics.dump(2) << "\n";
            else print_eval(r.metrics, out);
            return 0;
          }};
}

}  // namespace cli
}  // namespace diffq
