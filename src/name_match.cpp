// Glob matching of parameter names.
#include "name_match.h"

#include <fnmatch.h>

namespace diffq {

bool name_matches_any(const std::vector<std::string>& patterns, const std::string& name) {
  const auto dot = name.rfind('.');
  const std::string bare = dot == std::string::npos ? name : name.substr(dot + 1);
  for (const auto& pattern : patterns) {
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
    if (fnmatch(pattern.c_str(), bare.c_str(), 0) == 0) return true;
  }
  return false;
}

}  // namespace diffq
