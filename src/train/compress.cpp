// Post-training quantization of TorchScript files (see compress.h).
#include "diffq/train/compress.h"

#include <cmath>
#include <filesystem>
#include <map>

#include <torch/script.h>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/format.h"
#include "diffq/number_text.h"
#include "diffq/regular_file.h"
#include "diffq/restore.h"
#include "diffq/train/experiment.h"
#include "diffq/uniform_quantizer.h"

#include "torch_message.h"

namespace diffq {
namespace train {

namespace {

torch::jit::Module load_script(const std::string& path, const char* what) {
  require_regular_file(path, std::string("the TorchScript ") + what);
  try {
    return torch::jit::load(path);
  } catch (const std::exception& e) {
    throw Error(std::string("cannot load the TorchScript ") + what + " '" + path +
                "': " + torch_message(e));
  }
}

QuantizedState quantize(torch::jit::Module& module, int bits, double min_size) {
  UniformQuantizer q(module, UniformOptions().bits(bits).discovery(DiscoveryOptions().min_size(min_size)));
  return q.get_quantized_state();
}

// Squared quantization error of each record of `state` against `reference`.
std::vector<double> squared_errors(const QuantizedState& state, const std::map<std::string, const TensorRecord*>& reference) {
  std::vector<double> out;
  for (const auto& r : state.tensors) {
    double s = 0;
    if (r.encoding == Encoding::kUniform) {
      const auto v = dequantize(r);
      const auto& o = reference.at(r.name)->values_f32;
      for (size_t i = 0; i < v.size(); ++i) s += double(v[i] - o[i]) * double(v[i] - o[i]);
    }
    out.push_back(s);
  }
  return out;
}

// Greedy: from max_bits everywhere, lower by one bit the tensor whose
// squared error grows least per element-bit saved, until the mean is within budget.
std::vector<int> allocate_bits(const QuantizedState& base, const std::vector<std::vector<double>>& sse,
                               const CompressOptions& o, const std::string& source) {
  std::vector<int> alloc(base.tensors.size(), o.max_bits);
  double total_bits = 0, total_n = 0;
  for (const auto& r : base.tensors)
    if (r.encoding == Encoding::kUniform) {
      total_bits += double(o.max_bits) * double(r.numel());
      total_n += double(r.numel());
    }
  DIFFQ_CHECK(total_n > 0, "no tensor of '", source, "' is large enough to quantize (see --min-size)");
  while (total_bits / total_n > o.budget + 1e-12) {
    int best = -1;
    double best_cost = 0;
    for (size_t i = 0; i < alloc.size(); ++i) {
      if (base.tensors[i].encoding != Encoding::kUniform || alloc[i] <= o.min_bits) continue;
      const double cost = (sse[size_t(alloc[i] - 1 - o.min_bits)][i] - sse[size_t(alloc[i] - o.min_bits)][i]) /
                          double(base.tensors[i].numel());
      if (best < 0 || cost < best_cost) {
        best = int(i);
        best_cost = cost;
      }
    }
    if (best < 0) break;
    --alloc[size_t(best)];
    total_bits -= double(base.tensors[size_t(best)].numel());
  }
  return alloc;
}

QuantizedState compress_to_budget(torch::jit::Module& module, const CompressOptions& o, const std::string& source) {
  DIFFQ_CHECK(o.min_bits >= 1 && o.min_bits <= o.max_bits && o.max_bits <= 16,
              "need 1 <= --min-bits <= --max-bits <= 16");
  DIFFQ_CHECK(o.budget >= o.min_bits, "--budget ", o.budget, " is below --min-bits ", o.min_bits);
  const auto reference = float_state(module);
  std::map<std::string, const TensorRecord*> original;
  for (const auto& r : reference.tensors) original[r.name] = &r;
  std::vector<QuantizedState> states;  // [bits - min_bits]
  std::vector<std::vector<double>> sse;
  for (int b = o.min_bits; b <= o.max_bits; ++b) {
    states.push_back(quantize(module, b, o.min_size));
    sse.push_back(squared_errors(states.back(), original));
  }
  const auto alloc = allocate_bits(states.back(), sse, o, source);
  QuantizedState state = states.back();
  for (size_t i = 0; i < alloc.size(); ++i) {
    if (state.tensors[i].encoding != Encoding::kUniform) continue;
    state.tensors[i] = states[size_t(alloc[i] - o.min_bits)].tensors[i];
    state.options["alloc." + state.tensors[i].name] = std::to_string(alloc[i]);
  }
  state.options["bits"] = "mixed";
  state.options["budget"] = format_number(o.budget);
  state.options["allocation"] = "greedy, squared quantization error per bit saved";
  return state;
}

}  // namespace

QuantizedState compress_torchscript(const std::string& script_path, const CompressOptions& o) {
  auto module = load_script(script_path, "file");
  QuantizedState state;
  if (o.bits > 0) {
    DIFFQ_CHECK(o.bits <= 16, "--bits must be in 1..16");
    state = quantize(module, o.bits, o.min_size);
  } else {
    DIFFQ_CHECK(std::isfinite(o.budget) && o.budget > 0, "--budget must be a positive number of mean bits, not ",
                o.budget, " (or give --bits N)");
    state = compress_to_budget(module, o, script_path);
  }
  state.options["source"] = std::filesystem::path(script_path).filename().string();
  return state;
}

}  // namespace train
}  // namespace diffq
