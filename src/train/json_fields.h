#pragma once
// Structs as JSON objects through one list of their fields (private): a
// `for_each_field(object, visit)` function calls visit(name, field) for
// every field, and these two templates write and read with it.
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "diffq/error.h"

namespace diffq {
namespace train {

/// Every listed field of `object` into `json` (numbers exact).
template <typename Object, typename ForEach>
void write_fields(nlohmann::json& json, const Object& object, ForEach&& for_each_field) {
  for_each_field(object, [&](const char* name, const auto& value) { json[name] = value; });
}

/// The members of `json` into the listed fields of `object`; `special(key,
/// value)` handles the members outside the list (true when it did). Unknown
/// members and wrong types are refused with `diffq::Error` naming `what`.
template <typename Object, typename ForEach, typename Special>
void read_fields(const nlohmann::json& json, Object& object, ForEach&& for_each_field, Special&& special,
                 const char* what) {
  DIFFQ_CHECK(json.is_object(), what, "s must be a JSON object, not ", json.dump());
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (special(it.key(), it.value())) continue;
    bool known = false;
    for_each_field(object, [&](const char* name, auto& value) {
      if (it.key() != name) return;
      known = true;
      try {
        value = it.value().template get<std::decay_t<decltype(value)>>();
      } catch (const nlohmann::json::exception&) {
        throw Error(std::string(what) + " '" + name + "' has the wrong type: " + it.value().dump());
      }
    });
    DIFFQ_CHECK(known, "unknown ", what, " '", it.key(), "'");
  }
}

}  // namespace train
}  // namespace diffq
