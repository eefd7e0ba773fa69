// `diffq summarize` (runs' metrics into tables) and `diffq list`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "diffq/error.h"
#include "diffq/train/trainer.h"

namespace fs = std::filesystem;

namespace diffq {
namespace cli {

namespace {


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

Command add_summarize(CLI::App& app) {
  struct Flags {
    std::vector<std::string> dirs;
    std::string md, dat, title;
  };
  auto f = std::make_shared<Flags>();
  auto* su = app.add_subcommand("summarize", "collect runs' metrics.json into a markdown table and gnuplot data");
  su->add_option("dirs", f->dirs, "run directories or directories of runs")->required();
  su->add_option("--md", f->md, "markdown output (default: stdout)");
  su->add_option("--dat", f->dat, "gnuplot data output");
  su->add_option("--title", f->title, "table title");
  return {su, [f](std::ostream& out, std::ostream&) { return summarize(f->dirs, f->md, f->dat, f->title, out); }};
}

Command add_list(CLI::App& app) {
  auto* li = app.add_subcommand("list", "tasks, models and methods");
  return {li, [](std::ostream& out, std::ostream&) {
            for (const auto& task : models::task_names()) {
              out << "task " << task << "\n";
              for (const auto& m : models::model_names(task))
                out << "  model " << m << ": " << models::describe_model(task, m) << "\n";
            }
            for (const auto& m : train::methods()) out << "method " << m.name << ": " << m.summary << "\n";
            return 0;
          }};
}

}  // namespace cli
}  // namespace diffq
