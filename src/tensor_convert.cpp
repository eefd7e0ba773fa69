// Conversions between torch tensors and the quantized state; uniform math.
#include "tensor_convert.h"

#include <cstring>

#include <torch/torch.h>

#include "diffq/error.h"

namespace diffq {

DType to_dtype(torch::ScalarType type, const std::string& name) {
  switch (type) {
    case torch::kFloat32: return DType::kFloat32;
    case torch::kFloat16: return DType::kFloat16;
    case torch::kBFloat16: return DType::kBFloat16;
    case torch::kFloat64: return DType::kFloat64;
    default: break;
  }
  throw Error(detail::concat("parameter '", name, "' has unsupported dtype ", type));
}

torch::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return torch::kFloat32;
    case DType::kFloat16: return torch::kFloat16;
    case DType::kBFloat16: return torch::kBFloat16;
    case DType::kFloat64: return torch::kFloat64;
  }
  throw Error("unknown dtype in state");
}

TensorRecord float_record(const std::string& name, const torch::Tensor& tensor, bool float16) {
  TensorRecord record;
  record.name = name;
  record.shape = tensor.sizes().vec();
  record.dtype = to_dtype(tensor.scalar_type(), name);
  const int64_t n = tensor.numel();
  if (float16) {
    record.encoding = Encoding::kFloat16;
    auto half = tensor.detach().to(torch::kCPU, torch::kFloat16).contiguous();
    record.values_f16.resize(static_cast<size_t>(n));
    if (n > 0) std::memcpy(record.values_f16.data(), half.data_ptr(), n * sizeof(uint16_t));
  } else {
    record.encoding = Encoding::kFloat32;
    auto f = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    record.values_f32.assign(f.data_ptr<float>(), f.data_ptr<float>() + n);
  }
  return record;
}

std::vector<uint16_t> levels_to_vector(const torch::Tensor& levels) {
  auto l = levels.detach().to(torch::kCPU, torch::kInt32).contiguous().view(-1);
  const int32_t* p = l.data_ptr<int32_t>();
  return std::vector<uint16_t>(p, p + l.numel());
}

torch::Tensor values_to_tensor(const std::vector<float>& values,
                               const std::vector<int64_t>& shape) {
  auto out = torch::empty(shape, torch::kFloat32);
  if (!values.empty()) std::memcpy(out.data_ptr<float>(), values.data(), values.size() * 4);
  return out;
}

std::pair<float, float> finite_range(const torch::Tensor& w, const std::string& name) {
  if (w.numel() == 0) return {0.f, 0.f};
  auto minmax = torch::aminmax(w.detach());
  const float mn = std::get<0>(minmax).item<float>();
  const float mx = std::get<1>(minmax).item<float>();
  DIFFQ_CHECK(std::isfinite(mn) && std::isfinite(mx), "parameter '", name,
              "' contains NaN or infinite values; it cannot be quantized");
  return {mn, mx};
}

torch::Tensor uniform_levels(const torch::Tensor& w32, const torch::Tensor& denom, float mn,
                             float mx) {
  const int64_t groups = denom.size(0);
  auto flat = w32.reshape({groups, -1});
  if (!(mx > mn)) return torch::zeros_like(flat);
  const float range = mx - mn;
  return torch::round((flat - mn) / range * denom);
}

torch::Tensor uniform_values(const torch::Tensor& levels, const torch::Tensor& denom, float mn,
                             float mx) {
  const float range = mx - mn;
  return levels.div(denom).mul(range).add(mn);
}

}  // namespace diffq
