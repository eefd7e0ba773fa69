// Conversions between torch tensors and the quantized state; uniform math.
#include "tensor_convert.h"

#include <cstring>

#include <torch/torch.h>

#include "diffq/error.h"
#include "noise/noise_kernels.h"

namespace diffq {

DType to_dtype(torch::ScalarType type, const std::string& name) {
  switch (type) {
    case torch::kFloat32: return DType::kFloat32;
    case torch::kFloat16: return DType::kFloat16;
    case torch::kBFloat16: return DType::kBFloat16;
    case torch::kFloat64: return DType::kFloat64;
    case torch::kInt64: return DType::kInt64;
    case torch::kInt32: return DType::kInt32;
    case torch::kInt16: return DType::kInt16;
    case torch::kInt8: return DType::kInt8;
    case torch::kUInt8: return DType::kUInt8;
    case torch::kBool: return DType::kBool;
    default: break;
  }
  throw Error(detail::concat("tensor '", name, "' has unsupported dtype ", type,
                             " (float32/16/64, bfloat16, int64/32/16/8, uint8 or bool)"));
}

torch::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return torch::kFloat32;
    case DType::kFloat16: return torch::kFloat16;
    case DType::kBFloat16: return torch::kBFloat16;
    case DType::kFloat64: return torch::kFloat64;
    case DType::kInt64: return torch::kInt64;
    case DType::kInt32: return torch::kInt32;
    case DType::kInt16: return torch::kInt16;
    case DType::kInt8: return torch::kInt8;
    case DType::kUInt8: return torch::kUInt8;
    case DType::kBool: return torch::kBool;
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

TensorRecord integer_record(const std::string& name, const torch::Tensor& tensor) {
  TensorRecord record;
  record.name = name;
  record.shape = tensor.sizes().vec();
  record.dtype = to_dtype(tensor.scalar_type(), name);
  record.encoding = Encoding::kInteger;
  auto v = tensor.detach().to(torch::kCPU, torch::kInt64).contiguous();
  record.values_i64.assign(v.data_ptr<int64_t>(), v.data_ptr<int64_t>() + v.numel());
  return record;
}

torch::Tensor integer_tensor(const TensorRecord& record) {
  auto out = torch::empty(record.shape, torch::kInt64);
  if (!record.values_i64.empty()) {
    std::memcpy(out.data_ptr<int64_t>(), record.values_i64.data(),
                record.values_i64.size() * sizeof(int64_t));
  }
  return out;
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
  float mn, mx;
  if (w.device().is_cpu() && w.scalar_type() == torch::kFloat32 && w.is_contiguous()) {
    noise::range(w.data_ptr<float>(), w.numel(), &mn, &mx);  // one vectorised pass on the intra-op threads
  } else {
    auto minmax = torch::aminmax(w.detach());
    mn = std::get<0>(minmax).item<float>();
    mx = std::get<1>(minmax).item<float>();
  }
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
