#pragma once
// Durable file writes of the training library (private).
#include <string>

namespace diffq {
namespace train {

/// fsyncs a file or a directory (errors ignored: best effort).
void fsync_path(const std::string& path, bool directory);
/// Writes `text` to `path` atomically: temporary file, fsync, rename, fsync
/// of the directory. Throws `diffq::Error` naming the path.
void write_text_atomic(const std::string& path, const std::string& text);
/// Renames the finished temporary `tmp` over `path` and makes it durable.
void commit_file(const std::string& tmp, const std::string& path);
/// A temporary name next to `path`, private to this process
/// (`<path>.tmp.<pid>`).
std::string temporary_name(const std::string& path);
/// Removes the files of `dir` named like `temporary_name` whose process is
/// no longer running (left by a killed run). Returns how many were removed.
int remove_dead_temporaries(const std::string& dir);

}  // namespace train
}  // namespace diffq
