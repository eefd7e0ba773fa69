// Model files for torch models.
#include "diffq/model_file.h"

#include <sys/stat.h>

#include <cstdio>
#include <random>

#include <torch/script.h>

#include "diffq/error.h"
#include "diffq/restore.h"

namespace diffq {

uint64_t save_model(const Quantizer& quantizer, const std::string& path,
                    const SaveOptions& options) {
  save(quantizer.get_quantized_state(), path, options);
  struct stat info;
  DIFFQ_CHECK(::stat(path.c_str(), &info) == 0, "cannot stat '", path, "' after saving");
  return static_cast<uint64_t>(info.st_size);
}

QuantizedState restore_file(const ModelRef& model, const std::string& path,
                            const LoadOptions& options) {
  auto state = load(path, options);
  restore_validated(model, state);  // `load` validated it
  return state;
}

void restore_to_torchscript(const std::string& script_in, const std::string& model_file,
                            const std::string& script_out, const LoadOptions& options) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(script_in);
  } catch (const c10::Error& e) {
    throw Error(detail::concat("cannot load TorchScript file '", script_in,
                               "': ", e.what_without_backtrace()));
  }
  restore_file(module, model_file, options);
  std::random_device random;
  const std::string temporary = script_out + ".tmp." + std::to_string(random());
  try {
    module.save(temporary);
  } catch (const c10::Error& e) {
    std::remove(temporary.c_str());
    throw Error(detail::concat("cannot write TorchScript file '", script_out,
                               "': ", e.what_without_backtrace()));
  }
  if (std::rename(temporary.c_str(), script_out.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw Error(detail::concat("cannot rename the TorchScript file into '", script_out, "'"));
  }
}

}  // namespace diffq
