// libFuzzer target: load_from_memory on arbitrary bytes must either load a
// valid state or throw diffq::Error; anything else (crash, sanitizer report,
// other exception) is a bug. Loaded states must re-serialize and reload.
#include <cstddef>
#include <cstdint>

#include "diffq/error.h"
#include "diffq/format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Checksums off so that mutations reach the decoders; bounded memory.
  const auto options =
      diffq::LoadOptions().verify_checksums(false).max_memory(uint64_t{64} << 20).threads(1);
  diffq::QuantizedState state;
  try {
    state = diffq::load_from_memory(data, size, options);
  } catch (const diffq::Error&) {
    return 0;
  }
  const auto bytes = diffq::serialize(state, diffq::SaveOptions().threads(1).creation_time(0));
  diffq::load_from_memory(bytes.data(), bytes.size(), diffq::LoadOptions().threads(1));
  return 0;
}
