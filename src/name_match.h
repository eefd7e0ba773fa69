#pragma once
// Glob matching of parameter names (exclude lists, stage patterns).
#include <string>
#include <vector>

namespace diffq {

/// True when any fnmatch pattern matches the full dotted `name` or its bare
/// last component ("bias" for "layers.0.bias").
bool name_matches_any(const std::vector<std::string>& patterns, const std::string& name);

}  // namespace diffq
