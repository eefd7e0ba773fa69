#pragma once
/// \file version.h
/// Library version.

namespace diffq {
/// Version of the library, "major.minor.patch".
constexpr const char* kVersion = "0.1.0";
}  // namespace diffq
