#pragma once
/// \file model_file.h
/// Model files for torch models: save a quantizer's state, restore a model
/// (C++ or TorchScript) from a file without the quantizer.

#include <string>

#include "diffq/format.h"
#include "diffq/model_ref.h"
#include "diffq/quantizer.h"

namespace diffq {

/// Saves the quantizer's current quantized state (parameters and persistent
/// buffers, see `Quantizer::get_quantized_state`) to `path` (atomic; see
/// `diffq::save`). Returns the size of the file in bytes.
uint64_t save_model(const Quantizer& quantizer, const std::string& path,
                    const SaveOptions& options = {});

/// Loads the model file at `path` and writes its values (parameters and
/// buffers) into `model`. Names, kinds, shapes and dtypes are checked before
/// anything is written (see `diffq::restore`).
QuantizedState restore_file(const ModelRef& model, const std::string& path,
                            const LoadOptions& options = {});

/// Restores the TorchScript model `script_in` (its architecture) from the
/// model file `model_file` (parameters and buffers), and writes the result as a TorchScript file
/// `script_out` (atomically: temporary file, then rename), so that Python
/// users can `torch.jit.load` the decompressed model.
void restore_to_torchscript(const std::string& script_in, const std::string& model_file,
                            const std::string& script_out, const LoadOptions& options = {});

}  // namespace diffq
