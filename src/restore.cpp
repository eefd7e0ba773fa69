// Restoring a model (parameters and buffers) from a quantized state, checks
// first.
#include "diffq/restore.h"

#include <unordered_map>
#include <unordered_set>

#include <torch/torch.h>

#include "diffq/error.h"
#include "tensor_convert.h"

namespace diffq {

namespace {

// A tensor of the model that a record may target.
struct Target {
  torch::Tensor tensor;
  RecordKind kind;
};

const char* kind_word(RecordKind kind) { return record_kind_name(kind); }

// Checks that `record` may be written into `target` (registered as `name`).
void check_target(const TensorRecord& record, const std::string& name, const Target& target) {
  DIFFQ_CHECK(target.kind == record.kind, "restore: '", name, "' is a ", kind_word(target.kind),
              " in the model but a ", kind_word(record.kind), " record in the state");
  const char* what = kind_word(record.kind);
  const auto& t = target.tensor;
  DIFFQ_CHECK(t.sizes().vec() == record.shape, "restore: ", what, " '", name, "' has shape ",
              t.sizes(), " in the model but ", c10::IntArrayRef(record.shape), " in the state");
  const DType model_dtype = to_dtype(t.scalar_type(), name);
  DIFFQ_CHECK(model_dtype == record.dtype &&
                  (record.kind == RecordKind::kBuffer || t.is_floating_point()),
              "restore: ", what, " '", name, "' has dtype ", t.scalar_type(), " in the model but ",
              dtype_name(record.dtype), " in the state");
  DIFFQ_CHECK(is_integer(record.dtype) == (record.encoding == Encoding::kInteger), "restore: ",
              what, " '", name, "' of dtype ", dtype_name(record.dtype), " is stored with encoding ",
              encoding_name(record.encoding),
              is_integer(record.dtype) ? " (integer tensors need the integer encoding)"
                                       : " (only integer tensors use the integer encoding)");
}

// Decodes a float record into float32 values of its shape, in `out` if it
// is a CPU float32 contiguous tensor, else in a new CPU tensor (returned).
torch::Tensor decode_float(const TensorRecord& record, const torch::Tensor& out_hint) {
  torch::Tensor out = out_hint;
  if (!(out.defined() && out.device().is_cpu() && out.scalar_type() == torch::kFloat32 &&
        out.is_contiguous())) {
    out = torch::empty(record.shape, torch::kFloat32);
  }
  float* data = out.data_ptr<float>();
  at::parallel_for(0, record.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    dequantize_range(record, begin, end, data + begin);
  });
  return out;
}

}  // namespace

void restore(const ModelRef& model, const QuantizedState& state) {
  validate(state);
  restore_validated(model, state);
}

void restore_validated(const ModelRef& model, const QuantizedState& state) {
  std::unordered_map<std::string, Target> by_name;
  std::vector<std::pair<std::string, RecordKind>> model_names;
  for (const auto& p : model.parameters()) {
    by_name.emplace(p.name, Target{p.tensor, RecordKind::kParameter});
    model_names.push_back({p.name, RecordKind::kParameter});
  }
  for (const auto& b : model.buffers()) {
    by_name.emplace(b.name, Target{b.tensor, RecordKind::kBuffer});
    model_names.push_back({b.name, RecordKind::kBuffer});
  }

  // Pass 1: check everything (parameters and buffers), write nothing.
  std::unordered_set<std::string> covered;
  struct Write {
    const TensorRecord* record;
    std::vector<torch::Tensor> targets;
  };
  std::vector<Write> writes;
  for (const auto& record : state.tensors) {
    Write write{&record, {}};
    std::vector<std::string> names = {record.name};
    names.insert(names.end(), record.aliases.begin(), record.aliases.end());
    for (const auto& name : names) {
      auto it = by_name.find(name);
      DIFFQ_CHECK(it != by_name.end(), "restore: the model has no ", kind_word(record.kind),
                  " named '", name, "' (stored in the state)");
      check_target(record, name, it->second);
      covered.insert(name);
      write.targets.push_back(it->second.tensor);
    }
    writes.push_back(std::move(write));
  }
  for (const auto& entry : model_names) {
    DIFFQ_CHECK(covered.count(entry.first) == 1, "restore: ", kind_word(entry.second), " '",
                entry.first, "' of the model is missing from the state",
                entry.second == RecordKind::kBuffer
                    ? " (a state without buffers cannot restore a model that has some, such as "
                      "BatchNorm's running statistics)"
                    : "");
  }

  // Pass 2: write. The state is validated, so decoding cannot fail from
  // here on. CPU float32 contiguous targets are decoded in place, in
  // parallel; others go through a CPU buffer. Integer records are copied
  // exactly.
  torch::NoGradGuard no_grad;
  std::unordered_set<const void*> written;
  for (const auto& write : writes) {
    const TensorRecord& record = *write.record;
    torch::Tensor first;
    for (auto& target : write.targets) {
      if (!written.insert(target.unsafeGetTensorImpl()).second) continue;
      if (!first.defined()) {
        if (record.encoding == Encoding::kInteger) {
          first = integer_tensor(record);
        } else {
          first = decode_float(record, target);
          if (first.is_same(target)) continue;
        }
      }
      target.copy_(first.to(target.device(), target.scalar_type()));
    }
  }
}

}  // namespace diffq
