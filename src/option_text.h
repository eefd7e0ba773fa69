#pragma once
// The discovery options as text, shared by every quantizer's option map
// (private to the library).
#include <map>
#include <string>

#include "diffq/number_text.h"
#include "diffq/quantizer.h"

namespace diffq {

/// Adds min_size, float16 and detect_bound (exact decimal text) to `options`.
inline void add_discovery_options(std::map<std::string, std::string>& options,
                                  const DiscoveryOptions& discovery) {
  options["min_size"] = format_number(discovery.min_size());
  options["float16"] = discovery.float16() ? "true" : "false";
  options["detect_bound"] = discovery.detect_bound() ? "true" : "false";
}

}  // namespace diffq
