#pragma once
// Conversions between torch tensors and the torch-free quantized state.
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "diffq/quantized_state.h"

namespace diffq {

/// The stored dtype of a torch scalar type; throws for unsupported types.
DType to_dtype(torch::ScalarType type, const std::string& name);
/// The torch scalar type of a stored dtype.
torch::ScalarType to_scalar_type(DType dtype);
/// A float record (float16 or float32 payload) of `tensor`.
TensorRecord float_record(const std::string& name, const torch::Tensor& tensor, bool float16);
/// An exact integer record (`Encoding::kInteger`) of an integer or bool tensor.
TensorRecord integer_record(const std::string& name, const torch::Tensor& tensor);
/// The values of a kInteger record as a CPU int64 tensor of its shape.
torch::Tensor integer_tensor(const TensorRecord& record);
/// Copies a CPU uint16 vector of levels out of an integer tensor.
std::vector<uint16_t> levels_to_vector(const torch::Tensor& levels);
/// Float32 tensor (CPU) wrapping a copy of `values` with `shape`.
torch::Tensor values_to_tensor(const std::vector<float>& values, const std::vector<int64_t>& shape);

/// Range of a float tensor as (min, max) float32 values; throws naming
/// `name` when the tensor holds NaN or infinite values.
std::pair<float, float> finite_range(const torch::Tensor& w, const std::string& name);

/// Uniform levels of `w32` (float32, any shape) viewed as [groups, -1], with
/// per-group denominators `denom` (float32 [groups, 1], value 2^b - 1),
/// on the range [mn, mx]. A constant tensor gives all levels 0.
torch::Tensor uniform_levels(const torch::Tensor& w32, const torch::Tensor& denom, float mn,
                             float mx);
/// Values of `levels` (float32 [groups, -1]): level / denom * (mx - mn) + mn,
/// in that operation order (the same as `diffq::dequantize`).
torch::Tensor uniform_values(const torch::Tensor& levels, const torch::Tensor& denom, float mn,
                             float mx);

}  // namespace diffq
