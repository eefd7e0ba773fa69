#pragma once
/// \file restore.h
/// Writing a quantized state back into a model, without the quantizer.

#include "diffq/model_ref.h"
#include "diffq/quantized_state.h"

namespace diffq {

/// Writes the de-quantized values of `state` into `model`'s parameters,
/// matched by name (a record's aliases included). Only the architecture is
/// needed: no quantizer. Every name, shape and dtype is checked BEFORE
/// anything is written; the error names the first mismatch and the model is
/// left untouched. Every parameter of the model must be in the state and
/// vice versa. When two records name the same tensor (tied parameters
/// quantized without detection), the first one is written.
void restore(const ModelRef& model, const QuantizedState& state);

}  // namespace diffq
