// The float32 state of a model (the float baseline's model file).
#include <map>

#include <torch/torch.h>

#include "diffq/train/experiment.h"

namespace diffq {
namespace train {

QuantizedState float_state(const ModelRef& model) {
  QuantizedState state;
  state.method = "float";
  std::map<const void*, size_t> seen;
  for (const auto& p : model.parameters()) {
    const void* key = p.tensor.unsafeGetTensorImpl();
    auto it = seen.find(key);
    if (it != seen.end()) {
      state.tensors[it->second].aliases.push_back(p.name);
      continue;
    }
    seen[key] = state.tensors.size();
    TensorRecord r;
    r.name = p.name;
    r.shape = p.tensor.sizes().vec();
    r.encoding = Encoding::kFloat32;
    auto v = p.tensor.detach().to(torch::kFloat32).contiguous().cpu();
    r.values_f32.assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
    state.tensors.push_back(std::move(r));
  }
  return state;
}

}  // namespace train
}  // namespace diffq
