// The unquantized state of a model.
#include "diffq/float_state.h"

#include <unordered_map>

#include <torch/torch.h>

#include "buffer_state.h"
#include "diffq/error.h"
#include "tensor_convert.h"

namespace diffq {

QuantizedState float_state(const ModelRef& model, bool float16) {
  QuantizedState state;
  state.method = "float";
  state.options = {{"float16", float16 ? "true" : "false"}};
  torch::NoGradGuard no_grad;
  std::unordered_map<const void*, size_t> first;
  for (const auto& p : model.parameters()) {
    DIFFQ_CHECK(p.tensor.defined(), "parameter '", p.name, "' is undefined");
    DIFFQ_CHECK(p.tensor.is_floating_point(), "parameter '", p.name, "' has dtype ",
                p.tensor.scalar_type(), "; only floating-point parameters can be stored");
    const void* impl = p.tensor.unsafeGetTensorImpl();
    auto seen = first.find(impl);
    if (seen != first.end()) {
      state.tensors[seen->second].aliases.push_back(p.name);
      continue;
    }
    first[impl] = state.tensors.size();
    state.tensors.push_back(float_record(p.name, p.tensor, float16));
  }
  for (const auto& buffer : detail::collect_buffers(model)) {
    state.tensors.push_back(detail::buffer_record(buffer, float16));
  }
  return state;
}

}  // namespace diffq
