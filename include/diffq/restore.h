#pragma once
/// \file restore.h
/// Writing a quantized state back into a model, without the quantizer.

#include "diffq/model_ref.h"
#include "diffq/quantized_state.h"

namespace diffq {

/// Writes the de-quantized values of `state` into `model`'s parameters and
/// persistent buffers, matched by name (a record's aliases included). Only
/// the architecture is needed: no quantizer.
///
/// Transactional: every name, kind, shape and dtype (parameters AND
/// buffers) is checked BEFORE anything is written; the error names the
/// first mismatch and the model is left untouched. Every parameter and
/// buffer of the model must be in the state and vice versa; a record whose
/// kind differs from the model's (a parameter record naming a buffer) is
/// refused. Integer and bool buffers are written exactly. When two records
/// name the same tensor (tied parameters quantized without detection), the
/// first one is written.
void restore(const ModelRef& model, const QuantizedState& state);

/// `restore` without its first step, `validate(state)`: for a state that
/// `diffq::load` returned (it validated every record already), so that a
/// file is validated once. Precondition: `validate(state)` would pass.
void restore_validated(const ModelRef& model, const QuantizedState& state);

}  // namespace diffq
