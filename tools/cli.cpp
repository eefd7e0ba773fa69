// The `diffq` command-line tool.
#include "diffq/train/cli.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/train/trainer.h"

namespace fs = std::filesystem;

namespace diffq {
namespace cli {

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

double tensor_mean_bits(const TensorInfo& t) {
  double b = 0, n = 0;
  for (int i = 0; i < 17; ++i) {
    b += double(i) * double(t.bits_histogram[size_t(i)]);
    n += double(t.bits_histogram[size_t(i)]);
  }
  return n > 0 ? b / n : (t.encoding == Encoding::kFloat16 ? 16.0 : 32.0);
}

nlohmann::json inspect_json(const FileInfo& info) {
  nlohmann::json j;
  j["format_version"] = info.format_version;
  j["library_version"] = info.library_version;
  j["created_utc"] = info.created_utc;
  j["method"] = info.method;
  j["options"] = info.options;
  j["fingerprint"] = info.fingerprint;
  j["file_bytes"] = info.file_bytes;
  j["header_bytes"] = info.header_bytes;
  j["total_elements"] = info.total_elements;
  j["total_stored_bytes"] = info.total_stored_bytes;
  j["true_bits"] = info.true_bits;
  j["true_mib"] = info.true_bits / 8.0 / 1048576.0;
  j["bits_histogram"] = info.bits_histogram;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : info.tensors) {
    nlohmann::json e;
    e["name"] = t.name;
    e["aliases"] = t.aliases;
    e["shape"] = t.shape;
    e["dtype"] = dtype_name(t.dtype);
    e["encoding"] = encoding_name(t.encoding);
    e["coding"] = t.coding;
    e["numel"] = t.numel;
    e["bits_histogram"] = t.bits_histogram;
    e["mean_bits"] = tensor_mean_bits(t);
    e["stored_bytes"] = t.stored_bytes;
    e["raw_bytes"] = t.raw_bytes;
    e["true_bits"] = t.true_bits;
    j["tensors"].push_back(e);
  }
  return j;
}

void print_inspect(const FileInfo& info, std::ostream& out) {
  out << "method " << info.method << ", format v" << info.format_version << ", written by diffq "
      << info.library_version << " at " << info.created_utc << ", fingerprint " << info.fingerprint
      << "\n";
  std::vector<std::string> opts;
  for (const auto& kv : info.options)
    if (kv.first.rfind("alloc.", 0) != 0) opts.push_back(kv.first + "=" + kv.second);
  if (!opts.empty()) out << "options: " << join(opts, " ") << "\n";
  size_t w = 4;
  for (const auto& t : info.tensors) w = std::max(w, t.name.size());
  out << std::left << std::setw(int(w)) << "name" << "  " << std::setw(16) << "shape" << std::setw(9)
      << "encoding" << std::setw(6) << "coding" << std::right << std::setw(10) << "bytes" << std::setw(7)
      << "bits" << "  histogram (bits:elements)\n";
  for (const auto& t : info.tensors) {
    std::string hist;
    for (int b = 0; b < 17; ++b)
      if (t.bits_histogram[size_t(b)]) hist += std::to_string(b) + ":" + std::to_string(t.bits_histogram[size_t(b)]) + " ";
    char bits[16];
    std::snprintf(bits, sizeof bits, "%.2f", tensor_mean_bits(t));
    out << std::left << std::setw(int(w)) << t.name << "  " << std::setw(16) << shape_text(t.shape)
        << std::setw(9) << encoding_name(t.encoding) << std::setw(6) << t.coding << std::right
        << std::setw(10) << t.stored_bytes << std::setw(7) << bits << "  " << hist;
    if (!t.aliases.empty()) out << " (also " << join(t.aliases) << ")";
    out << "\n";
  }
  std::string hist;
  for (int b = 0; b < 17; ++b)
    if (info.bits_histogram[size_t(b)]) hist += std::to_string(b) + ":" + std::to_string(info.bits_histogram[size_t(b)]) + " ";
  char total[400];
  std::snprintf(total, sizeof total,
                "total: %zu tensors, %lld elements, payload %llu bytes, file %llu bytes (header %llu), "
                "true size %.4f MiB",
                info.tensors.size(), (long long)info.total_elements,
                (unsigned long long)info.total_stored_bytes, (unsigned long long)info.file_bytes,
                (unsigned long long)info.header_bytes, info.true_bits / 8.0 / 1048576.0);
  out << total << "\n";
  if (!hist.empty()) out << "bits histogram: " << hist << "\n";
}

EntropyCoding coding_of(const std::string& name) {
  if (name == "none") return EntropyCoding::kNone;
  if (name == "zstd") return EntropyCoding::kZstd;
  if (name == "rans") return EntropyCoding::kRans;
  return EntropyCoding::kAuto;
}

// Reads every RUN/metrics.json below the given directories into markdown and
// gnuplot data files.
int summarize(const std::vector<std::string>& dirs, const std::string& md_path,
              const std::string& dat_path, const std::string& title, std::ostream& out) {
  std::vector<nlohmann::json> runs;
  for (const auto& d : dirs) {
    DIFFQ_CHECK(fs::exists(d), "no such directory '", d, "'");
    std::vector<fs::path> files;
    if (fs::is_regular_file(fs::path(d) / "metrics.json")) files.push_back(fs::path(d) / "metrics.json");
    for (const auto& e : fs::recursive_directory_iterator(d))
      if (e.path().filename() == "metrics.json" && e.path().parent_path() != fs::path(d)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f);
      auto j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_discarded()) continue;
      j["run"] = f.parent_path().filename().string();
      runs.push_back(j);
    }
  }
  DIFFQ_CHECK(!runs.empty(), "no metrics.json found under ", join(dirs));
  auto label = [](const nlohmann::json& r) {
    const auto& o = r["options"];
    const std::string m = r["method"];
    std::ostringstream s;
    s << m;
    if (o.contains("bits") && m != "diffq") s << " " << o["bits"].get<int>() << "b";
    if (m == "diffq") s << " λ=" << o["penalty"].get<double>() << " g=" << o["group_size"].get<int64_t>();
    return s.str();
  };
  const bool lm = runs.front().contains("perplexity");
  std::ostringstream md;
  md << "| run | method | " << (lm ? "test perplexity" : "test accuracy (%)")
     << " | true size (MiB) | × smaller (true) | file (bytes) | × smaller (file) | mean bits | epochs | train time (s) |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|\n";
  std::ostringstream dat;
  dat << "# method label true_mib metric file_bytes mean_bits run\n";
  std::sort(runs.begin(), runs.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    if (a["method"] != b["method"]) return a["method"].get<std::string>() < b["method"].get<std::string>();
    return a["true_mib"].get<double>() > b["true_mib"].get<double>();
  });
  for (const auto& r : runs) {
    const double metric = lm ? r["perplexity"].get<double>() : r["accuracy"].get<double>();
    char row[600];
    std::snprintf(row, sizeof row, "| %s | %s | %.2f | %.4f | %.1f | %llu | %.1f | %.2f | %d | %.0f |\n",
                  r["run"].get<std::string>().c_str(), label(r).c_str(), metric, r["true_mib"].get<double>(),
                  r["fp32_mib"].get<double>() / r["true_mib"].get<double>(),
                  (unsigned long long)r["file_bytes"].get<uint64_t>(), r["compression"].get<double>(),
                  r["mean_bits"].get<double>(), r["epochs"].get<int>(), r["train_seconds"].get<double>());
    md << row;
    std::string l = label(r);
    std::replace(l.begin(), l.end(), ' ', '_');
    dat << r["method"].get<std::string>() << " " << l << " " << r["true_mib"].get<double>() << " "
        << metric << " " << r["file_bytes"].get<uint64_t>() << " " << r["mean_bits"].get<double>()
        << " " << r["run"].get<std::string>() << "\n";
  }
  std::string text = (title.empty() ? "" : "## " + title + "\n\n") + md.str();
  if (md_path.empty()) out << text;
  else {
    std::ofstream f(md_path);
    DIFFQ_CHECK(f.good(), "cannot write '", md_path, "'");
    f << text;
  }
  if (!dat_path.empty()) {
    std::ofstream f(dat_path);
    DIFFQ_CHECK(f.good(), "cannot write '", dat_path, "'");
    f << dat.str();
  }
  return 0;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"diffq: differentiable model compression (DiffQ) and its baselines on LibTorch"};
  app.name("diffq");
  app.require_subcommand(1);
  app.fallthrough(false);

  // ---- train
  train::TrainConfig cfg;
  bool json_out = false;
  std::string ptq_bits_text;
  auto* tr = app.add_subcommand("train", "train a model of a task with a compression method");
  tr->add_option("--task", cfg.model.task, "fashion-mnist | kjv-lm")->capture_default_str()
      ->check(CLI::IsMember({"fashion-mnist", "kjv-lm"}));
  std::string model_name;
  tr->add_option("--model", model_name,
                 "fashion-mnist: cnn (default) | resnet20 | mobilenet | vit; kjv-lm: transformer (default) | lstm");
  std::string method_help = "compression method:";
  for (const auto& m : train::methods()) method_help += "\n  " + m.name + ": " + m.summary;
  tr->add_option("--method", cfg.method, method_help)->capture_default_str();
  auto* bits_opt = tr->add_option("--bits", cfg.method_options.bits, "ptq / qat / lsq: bit-width (1..16)")
                       ->check(CLI::Range(1, 16));
  tr->add_option("--penalty,--lambda", cfg.method_options.penalty, "diffq: λ, penalty per MiB of model size")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  tr->add_option("--group-size", cfg.method_options.group_size,
                 "diffq: weights sharing one bit-width (0 = one per tensor)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  tr->add_option("--bits-lr", cfg.method_options.bits_lr,
                 "learning rate of the quantizer's own parameters (Adam): diffq bits' logits (default 1e-2), lsq steps (default --lr)");
  tr->add_option("--min-bits", cfg.method_options.min_bits, "diffq: lowest bit-width")->capture_default_str();
  tr->add_option("--max-bits", cfg.method_options.max_bits, "diffq: highest bit-width")->capture_default_str();
  tr->add_option("--init-bits", cfg.method_options.init_bits, "diffq: initial bit-width")->capture_default_str();
  tr->add_option("--extra-bits", cfg.method_options.extra_bits, "diffq: bits added at true quantization")
      ->capture_default_str();
  tr->add_option("--param", cfg.method_options.param, "diffq: bits | noise parametrisation")
      ->capture_default_str()->check(CLI::IsMember({"bits", "noise"}));
  tr->add_option("--noise", cfg.method_options.noise, "diffq: gaussian | uniform")
      ->capture_default_str()->check(CLI::IsMember({"gaussian", "uniform"}));
  tr->add_option("--min-size", cfg.method_options.min_size,
                 "tensors of at most min_size MB (floor(min_size*2^20/4) elements) stay float")
      ->capture_default_str();
  tr->add_flag("--float16", cfg.method_options.float16, "store the float leftovers as float16");
  tr->add_option("--exclude", cfg.method_options.exclude, "glob of parameters left in float (repeatable)");
  std::vector<std::string> extra;
  tr->add_option("--opt", extra, "method-specific option key=value (repeatable)");
  tr->add_option("--epochs", cfg.epochs, "epochs")->capture_default_str()->check(CLI::PositiveNumber);
  tr->add_option("--batch-size", cfg.batch_size, "batch size")->capture_default_str()->check(CLI::PositiveNumber);
  tr->add_option("--lr", cfg.lr, "learning rate of the weights (Adam)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  tr->add_option("--weight-decay", cfg.weight_decay, "weight decay")->capture_default_str();
  tr->add_option("--schedule", cfg.schedule, "cosine | constant")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "constant"}));
  tr->add_option("--clip", cfg.clip, "max gradient norm (0 = off)")->capture_default_str();
  tr->add_flag("--augment", cfg.augment, "fashion-mnist: random 2-pixel shifts and horizontal flips");
  tr->add_option("--seed", cfg.seed, "seed of everything")->capture_default_str();
  tr->add_option("--threads", cfg.threads, "intra-op threads (1 = bit-reproducible)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  tr->add_option("--train-limit", cfg.data.train_limit,
                 "keep this many training examples (images, or sequences of context+1 tokens); 0 = all")
      ->capture_default_str();
  tr->add_option("--test-limit", cfg.data.test_limit, "keep this many test images / tokens; 0 = all")
      ->capture_default_str();
  tr->add_option("--data-dir", cfg.data.fashion_dir, "Fashion-MNIST directory")->capture_default_str();
  tr->add_option("--text", cfg.data.text_path,
                 "kjv-lm: text file in the `bible` output format (default: run `bible`)");
  tr->add_option("--vocab-size", cfg.data.vocab_size, "kjv-lm: vocabulary cap")->capture_default_str();
  tr->add_option("--context", cfg.model.context, "kjv-lm: context length")->capture_default_str()
      ->check(CLI::PositiveNumber);
  tr->add_option("--dim", cfg.model.dim, "kjv-lm: model width")->capture_default_str();
  tr->add_option("--layers", cfg.model.layers, "kjv-lm: layers")->capture_default_str();
  tr->add_option("--width", cfg.model.width, "fashion-mnist: channel width multiplier")->capture_default_str();
  tr->add_option("--out", cfg.out_dir, "output directory: model.diffq, metrics.json, log.jsonl, checkpoint.pt")
      ->required();
  tr->add_flag("--resume", cfg.resume, "continue the run in --out from its last checkpoint");
  tr->add_flag("--overwrite", cfg.overwrite, "start over even if --out holds a run");
  tr->add_option("--checkpoint-every", cfg.checkpoint_every, "checkpoint every N steps (and every epoch)")
      ->capture_default_str();
  tr->add_option("--coding", cfg.coding, "model file payload coding: none | zstd | rans | auto")
      ->capture_default_str()->check(CLI::IsMember({"none", "zstd", "rans", "auto"}));
  tr->add_option("--progress", cfg.progress, "auto | bar | plain | none")->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "plain", "none"}));
  tr->add_option("--stop-after-step", cfg.stop_after_step, "testing: stop as if killed after this step")
      ->group("");
  tr->add_flag("--json", json_out, "print metrics.json on stdout at the end");

  // ---- eval
  std::string file;
  train::DataOptions data;
  int threads = 1;
  auto* ev = app.add_subcommand("eval", "restore a model from its file alone and evaluate it on its task's test set");
  ev->add_option("file", file, "model file written by `diffq train`")->required();
  ev->add_option("--data-dir", data.fashion_dir, "Fashion-MNIST directory")->capture_default_str();
  ev->add_option("--text", data.text_path, "kjv-lm text (default: run `bible`)");
  ev->add_option("--test-limit", data.test_limit, "evaluate on this many test images / tokens (0 = all)");
  ev->add_option("--threads", threads, "intra-op threads")->capture_default_str()->check(CLI::PositiveNumber);
  ev->add_flag("--json", json_out, "JSON output");

  // ---- inspect
  bool dat_out = false;
  auto* in = app.add_subcommand("inspect", "describe a model file: per tensor and totals");
  in->add_option("file", file, "model file")->required();
  in->add_flag("--json", json_out, "JSON output");
  in->add_flag("--dat", dat_out, "gnuplot data: index, mean bits, elements, name (one line per tensor)");

  // ---- compress
  std::string input, output, restore_file, template_path, coding = "auto";
  int bits = 0, min_bits = 2, max_bits = 8;
  double budget = 0, min_size = 0.01;
  auto* co = app.add_subcommand(
      "compress",
      "post-training quantization of a TorchScript file into a model file, or (--restore) back to TorchScript");
  co->add_option("input", input, "TorchScript file (.pt) to compress");
  co->add_option("-o,--out", output, "output file (.diffq, or .pt with --restore)")->required();
  auto* cb = co->add_option("--bits", bits, "uniform bits everywhere (1..16)")->check(CLI::Range(1, 16));
  auto* cg = co->add_option("--budget", budget,
                            "mean bits target; bits per tensor allocated greedily (least squared error per bit saved)")
                 ->check(CLI::PositiveNumber);
  cb->excludes(cg);
  co->add_option("--min-bits", min_bits, "--budget: lowest bits per tensor")->capture_default_str();
  co->add_option("--max-bits", max_bits, "--budget: highest bits per tensor")->capture_default_str();
  co->add_option("--min-size", min_size, "tensors of at most min_size MB stay float")->capture_default_str();
  co->add_option("--coding", coding, "payload coding: none | zstd | rans | auto")->capture_default_str()
      ->check(CLI::IsMember({"none", "zstd", "rans", "auto"}));
  auto* cr = co->add_option("--restore", restore_file, "model file to restore into --template, written to --out");
  co->add_option("--template", template_path, "TorchScript file giving the architecture (with --restore)");
  cr->excludes(cb);
  cr->excludes(cg);

  // ---- summarize
  std::vector<std::string> dirs;
  std::string md_path, dat_path, title;
  auto* su = app.add_subcommand("summarize", "collect runs' metrics.json into a markdown table and gnuplot data");
  su->add_option("dirs", dirs, "run directories or directories of runs")->required();
  su->add_option("--md", md_path, "markdown output (default: stdout)");
  su->add_option("--dat", dat_path, "gnuplot data output");
  su->add_option("--title", title, "table title");

  // ---- list
  auto* li = app.add_subcommand("list", "tasks, models and methods");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }

  try {
    if (tr->parsed()) {
      const auto& method = train::find_method(cfg.method);
      const bool needs_bits =
          std::find(method.options.begin(), method.options.end(), "bits") != method.options.end();
      if (needs_bits && bits_opt->count() == 0) {
        err << "diffq train: --bits N is required for --method " << cfg.method << "\n";
        return 2;
      }
      if (model_name.empty()) model_name = cfg.model.task == "kjv-lm" ? "transformer" : "cnn";
      cfg.model.name = model_name;
      models::model_names(cfg.model.task);
      const auto names = models::model_names(cfg.model.task);
      if (std::find(names.begin(), names.end(), model_name) == names.end()) {
        err << "diffq train: unknown model '" << model_name << "' for --task " << cfg.model.task
            << " (one of: " << join(names) << ")\n";
        return 2;
      }
      for (const auto& kv : extra) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
          err << "diffq train: --opt expects key=value, got '" << kv << "'\n";
          return 2;
        }
        cfg.method_options.extra[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      cfg.progress_stream = &err;
      auto result = train::run_training(cfg);
      if (result.interrupted) return 130;
      if (json_out) out << result.metrics.dump(2) << "\n";
      else out << "model file: " << result.metrics["model_file"].get<std::string>() << "\n";
      return 0;
    }
    if (ev->parsed()) {
      auto r = train::evaluate_file(file, data, threads);
      if (json_out) {
        out << r.metrics.dump(2) << "\n";
      } else {
        const auto& m = r.metrics;
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
      return 0;
    }
    if (in->parsed()) {
      const auto info = inspect(file);
      if (json_out) out << inspect_json(info).dump(2) << "\n";
      else if (dat_out) {
        out << "# index mean_bits elements name\n";
        int i = 0;
        for (const auto& t : info.tensors)
          out << i++ << " " << tensor_mean_bits(t) << " " << t.numel << " " << t.name << "\n";
      } else print_inspect(info, out);
      return 0;
    }
    if (co->parsed()) {
      if (!restore_file.empty()) {
        if (template_path.empty()) {
          err << "diffq compress: --restore needs --template TEMPLATE.pt (the architecture)\n";
          return 2;
        }
        train::restore_torchscript(restore_file, template_path, output);
        out << "restored " << restore_file << " into " << output << "\n";
        return 0;
      }
      if (input.empty()) {
        err << "diffq compress: give the TorchScript file to compress (or --restore FILE)\n";
        return 2;
      }
      if (bits == 0 && budget == 0) {
        err << "diffq compress: give --bits N or --budget B\n";
        return 2;
      }
      auto state = train::compress_torchscript(input, bits, budget, min_bits, max_bits, min_size);
      save(state, output, SaveOptions().entropy_coding(coding_of(coding)));
      const auto info = inspect(output);
      char line[300];
      std::snprintf(line, sizeof line, "wrote %s: %llu bytes, true size %.4f MiB, mean bits %.2f\n",
                    output.c_str(), (unsigned long long)info.file_bytes, state.true_mib(),
                    train::mean_bits(state));
      out << line;
      return 0;
    }
    if (su->parsed()) return summarize(dirs, md_path, dat_path, title, out);
    if (li->parsed()) {
      for (const auto& task : models::task_names()) {
        out << "task " << task << "\n";
        for (const auto& m : models::model_names(task))
          out << "  model " << m << ": " << models::describe_model(task, m) << "\n";
      }
      for (const auto& m : train::methods()) out << "method " << m.name << ": " << m.summary << "\n";
      return 0;
    }
  } catch (const Error& e) {
    err << "diffq: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    err << "diffq: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    err << "diffq: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace cli
}  // namespace diffq
