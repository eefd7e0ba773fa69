#pragma once
/// \file regular_file.h
/// Refusing paths that are not regular files before opening them (torch-free).

#include <string>

namespace diffq {

/// Throws `diffq::Error` unless `path` names a regular file (following
/// symbolic links): a missing path, a directory, a FIFO or a device is
/// refused without being opened, so that reading it cannot block. `what`
/// names the file in the message ("the text file", "the model file").
void require_regular_file(const std::string& path, const std::string& what);

}  // namespace diffq
