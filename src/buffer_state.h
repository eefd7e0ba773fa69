#pragma once
// The model's buffers in a quantized state: discovery (tied names merged)
// and their exact / float records. Shared by the quantizers and float_state.
#include <string>
#include <vector>

#include "diffq/model_ref.h"
#include "diffq/quantized_state.h"
#include "diffq/quantizer.h"

namespace diffq {
namespace detail {

/// The model's buffers in registration order; a tensor registered under
/// several names is one entry whose `aliases` hold the later names. Throws
/// `diffq::Error` naming a buffer whose dtype cannot be stored.
std::vector<Buffer> collect_buffers(const ModelRef& model);

/// The record of a buffer (kind kBuffer, aliases filled): floating buffers
/// as float32 (float16 when `float16`), integer and bool buffers exactly
/// (`Encoding::kInteger`). Buffers are never quantized.
TensorRecord buffer_record(const Buffer& buffer, bool float16);

}  // namespace detail
}  // namespace diffq
