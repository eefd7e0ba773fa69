// Buffers in a quantized state: discovery and records.
#include "buffer_state.h"

#include <unordered_map>

#include <torch/torch.h>

#include "diffq/error.h"
#include "tensor_convert.h"

namespace diffq {
namespace detail {

std::vector<Buffer> collect_buffers(const ModelRef& model) {
  std::vector<Buffer> out;
  std::unordered_map<const void*, size_t> first;
  for (auto& buffer : model.buffers()) {
    const auto& t = buffer.tensor;
    to_dtype(t.scalar_type(), buffer.name);  // rejects complex and other dtypes now
    const void* impl = t.unsafeGetTensorImpl();
    auto seen = first.find(impl);
    if (seen != first.end()) {
      out[seen->second].aliases.push_back(buffer.name);
      continue;
    }
    first[impl] = out.size();
    Buffer entry;
    entry.name = buffer.name;
    entry.tensor = t;
    out.push_back(std::move(entry));
  }
  return out;
}

TensorRecord buffer_record(const Buffer& buffer, bool float16) {
  torch::NoGradGuard no_grad;
  TensorRecord record = buffer.tensor.is_floating_point()
                            ? float_record(buffer.name, buffer.tensor, float16)
                            : integer_record(buffer.name, buffer.tensor);
  record.kind = RecordKind::kBuffer;
  record.aliases = buffer.aliases;
  return record;
}

}  // namespace detail
}  // namespace diffq
