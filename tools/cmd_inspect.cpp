// `diffq inspect`: describe a model file, per tensor and in total.
#include <cstdio>
#include <iomanip>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "diffq/format.h"

namespace diffq {
namespace cli {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
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
  j["parameter_bytes"] = info.parameter_bytes;
  j["buffer_bytes"] = info.buffer_bytes;
  j["buffer_elements"] = info.buffer_elements;
  j["buffer_true_bits"] = info.buffer_true_bits;
  j["padding_bytes"] = info.padding_bytes;
  j["bits_histogram"] = info.bits_histogram;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : info.tensors) {
    nlohmann::json e;
    e["name"] = t.name;
    e["kind"] = record_kind_name(t.kind);
    e["aliases"] = t.aliases;
    e["shape"] = t.shape;
    e["dtype"] = dtype_name(t.dtype);
    e["encoding"] = encoding_name(t.encoding);
    e["coding"] = t.coding;
    e["numel"] = t.numel;
    e["bits_histogram"] = t.bits_histogram;
    e["mean_bits"] = t.mean_bits;
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
    std::snprintf(bits, sizeof bits, "%.2f", t.mean_bits);
    out << std::left << std::setw(int(w)) << t.name << "  " << std::setw(16) << shape_text(t.shape)
        << std::setw(9) << encoding_name(t.encoding) << std::setw(6) << t.coding << std::right
        << std::setw(10) << t.stored_bytes << std::setw(7) << bits << "  " << hist;
    if (!t.aliases.empty()) out << " (also " << join(t.aliases) << ")";
    if (t.kind == RecordKind::kBuffer) out << " [buffer]";
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
  std::snprintf(total, sizeof total,
                "file = header %llu + padding %llu + parameters %llu + buffers %llu bytes (%lld buffer elements)",
                (unsigned long long)info.header_bytes, (unsigned long long)info.padding_bytes,
                (unsigned long long)info.parameter_bytes, (unsigned long long)info.buffer_bytes,
                (long long)info.buffer_elements);
  out << total << "\n";
  if (!hist.empty()) out << "bits histogram: " << hist << "\n";
}

}  // namespace

Command add_inspect(CLI::App& app) {
  struct Flags {
    std::string file;
    bool json = false, dat = false;
  };
  auto f = std::make_shared<Flags>();
  auto* in = app.add_subcommand("inspect", "describe a model file: per tensor and totals");
  in->add_option("file", f->file, "model file")->required();
  in->add_flag("--json", f->json, "JSON output");
  in->add_flag("--dat", f->dat, "gnuplot data: index, mean bits, elements, name (one line per tensor)");
  return {in, [f](std::ostream& out, std::ostream&) {
            const auto info = inspect(f->file);
            if (f->json) {
              out << inspect_json(info).dump(2) << "\n";
            } else if (f->dat) {
              out << "# index mean_bits elements name\n";
              int i = 0;
              for (const auto& t : info.tensors) out << i++ << " " << t.mean_bits << " " << t.numel << " " << t.name << "\n";
            } else {
              print_inspect(info, out);
            }
            return 0;
          }};
}

}  // namespace cli
}  // namespace diffq
