#pragma once
/// \file float_state.h
/// The unquantized state of a model (method "float"), for storing a float
/// baseline in the model-file format.

#include "diffq/model_ref.h"
#include "diffq/quantized_state.h"

namespace diffq {

/// The whole state of `model` without quantization: one float32 record per
/// parameter (float16 when `float16`), tied parameters as aliases of their
/// first occurrence, then one record per persistent buffer as
/// `Quantizer::get_quantized_state()` stores them (floating buffers float32
/// or float16, integer and bool buffers exactly). `method` is "float" and
/// `options` holds {"float16": "true"|"false"}. `restore(model, state)`
/// writes it back (exactly, without float16).
QuantizedState float_state(const ModelRef& model, bool float16 = false);

}  // namespace diffq
