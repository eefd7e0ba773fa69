// Restoring a model from a quantized state, checks first.
#include "diffq/restore.h"

#include <unordered_map>
#include <unordered_set>

#include <torch/torch.h>

#include "diffq/error.h"
#include "tensor_convert.h"

namespace diffq {

void restore(const ModelRef& model, const QuantizedState& state) {
  validate(state);
  const auto params = model.parameters();
  std::unordered_map<std::string, const NamedParameter*> by_name;
  for (const auto& p : params) by_name[p.name] = &p;

  // Pass 1: check everything, write nothing.
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
      DIFFQ_CHECK(it != by_name.end(), "restore: the model has no parameter named '", name,
                  "' (stored in the state)");
      const auto& t = it->second->tensor;
      DIFFQ_CHECK(t.sizes().vec() == record.shape, "restore: parameter '", name, "' has shape ",
                  t.sizes(), " in the model but ", c10::IntArrayRef(record.shape),
                  " in the state");
      DIFFQ_CHECK(t.is_floating_point() && to_dtype(t.scalar_type(), name) == record.dtype,
                  "restore: parameter '", name, "' has dtype ", t.scalar_type(),
                  " in the model but ", dtype_name(record.dtype), " in the state");
      covered.insert(name);
      write.targets.push_back(t);
    }
    writes.push_back(std::move(write));
  }
  for (const auto& p : params) {
    DIFFQ_CHECK(covered.count(p.name) == 1, "restore: parameter '", p.name,
                "' of the model is missing from the state");
  }

  // Pass 2: write. The state is validated, so decoding cannot fail from
  // here on. CPU float32 contiguous targets are decoded in place, in
  // parallel; others go through a float32 buffer.
  torch::NoGradGuard no_grad;
  std::unordered_set<const void*> written;
  for (const auto& write : writes) {
    const TensorRecord& record = *write.record;
    const int64_t n = record.numel();
    torch::Tensor first;
    for (auto& target : write.targets) {
      if (!written.insert(target.unsafeGetTensorImpl()).second) continue;
      if (!first.defined() && target.device().is_cpu() &&
          target.scalar_type() == torch::kFloat32 && target.is_contiguous()) {
        float* out = target.data_ptr<float>();
        at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
          dequantize_range(record, begin, end, out + begin);
        });
        first = target;
        continue;
      }
      if (!first.defined()) {
        auto buffer = torch::empty(record.shape, torch::kFloat32);
        float* out = buffer.data_ptr<float>();
        at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
          dequantize_range(record, begin, end, out + begin);
        });
        first = buffer;
      }
      target.copy_(first.to(target.device(), target.scalar_type()));
    }
  }
}

}  // namespace diffq
