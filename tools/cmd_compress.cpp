// `diffq compress`: post-training quantization of a TorchScript file, or
// (--restore) a model file back to TorchScript.
#include <cstdio>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "diffq/format.h"
#include "diffq/model_file.h"
#include "diffq/train/compress.h"

namespace diffq {
namespace cli {

namespace {

struct CompressFlags {
  std::string input, output, restore_file, template_path, coding = "auto";
  train::CompressOptions options;
};

// True when `output` is the same file as `input` (both exist).
bool same_file(const std::string& input, const std::string& output) {
  std::error_code ec;
  return !input.empty() && std::filesystem::equivalent(input, output, ec) && !ec;
}

int compress(const CompressFlags& f, std::ostream& out, std::ostream& err) {
  for (const auto& input : {f.input, f.restore_file, f.template_path}) {
    if (!same_file(input, f.output)) continue;
    err << "diffq compress: --out '" << f.output << "' is the input file '" << input
        << "': choose another output file\n";
    return 2;
  }
  if (!f.restore_file.empty()) {
    if (f.template_path.empty()) {
      err << "diffq compress: --restore needs --template TEMPLATE.pt (the architecture)\n";
      return 2;
    }
    restore_to_torchscript(f.template_path, f.restore_file, f.output);
    out << "restored " << f.restore_file << " into " << f.output << "\n";
    return 0;
  }
  if (f.input.empty()) {
    err << "diffq compress: give the TorchScript file to compress (or --restore FILE)\n";
    return 2;
  }
  if (f.options.bits == 0 && f.options.budget == 0) {
    err << "diffq compress: give --bits N or --budget B\n";
    return 2;
  }
  auto state = train::compress_torchscript(f.input, f.options);
  save(state, f.output, SaveOptions().entropy_coding(parse_entropy_coding(f.coding)));
  char line[300];
  std::snprintf(line, sizeof line, "wrote %s: %llu bytes, true size %.4f MiB, mean bits %.2f\n", f.output.c_str(),
                (unsigned long long)std::filesystem::file_size(f.output), state.true_mib(), state.mean_bits());
  out << line;
  return 0;
}

}  // namespace

Command add_compress(CLI::App& app) {
  auto f = std::make_shared<CompressFlags>();
  auto& o = f->options;
  auto* co = app.add_subcommand(
      "compress", "post-training quantization of a TorchScript file into a model file, or (--restore) back to TorchScript");
  co->add_option("input", f->input, "TorchScript file (.pt) to compress");
  co->add_option("-o,--out", f->output, "output file (.diffq, or .pt with --restore)")->required();
  auto* cb = co->add_option("--bits", o.bits, "uniform bits everywhere (1..16)")->check(CLI::Range(1, 16));
  auto* cg = co->add_option("--budget", o.budget,
                            "mean bits target; bits per tensor allocated greedily (least squared error per bit saved)");
  cb->excludes(cg);
  co->add_option("--min-bits", o.min_bits, "--budget: lowest bits per tensor")->capture_default_str();
  co->add_option("--max-bits", o.max_bits, "--budget: highest bits per tensor")->capture_default_str();
  co->add_option("--min-size", o.min_size, "tensors of at most min_size MB stay float")->capture_default_str();
  co->add_option("--coding", f->coding, "payload coding: none | zstd | rans | auto")->capture_default_str()
      ->check(CLI::IsMember({"none", "zstd", "rans", "auto"}));
  auto* cr = co->add_option("--restore", f->restore_file, "model file to restore into --template, written to --out");
  co->add_option("--template", f->template_path, "TorchScript file giving the architecture (with --restore)");
  cr->excludes(cb);
  cr->excludes(cg);
  return {co, [f](std::ostream& out, std::ostream& err) { return compress(*f, out, err); }};
}

}  // namespace cli
}  // namespace diffq
