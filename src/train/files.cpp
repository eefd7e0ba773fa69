// Durable file writes of the training library (see files.h).
#include "files.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "diffq/error.h"

namespace diffq {
namespace train {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

std::string temporary_name(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

int remove_dead_temporaries(const std::string& dir) {
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at + 5 >= name.size()) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive
    std::error_code remove_error;
    if (std::filesystem::remove(entry.path(), remove_error)) ++removed;
  }
  return removed;
}

void commit_file(const std::string& tmp, const std::string& path) {
  fsync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot rename '" + tmp + "' to '" + path + "'");
  }
  auto dir = std::filesystem::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, true);
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = temporary_name(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    DIFFQ_CHECK(out.good(), "cannot write '", tmp, "'");
    out << text;
    out.flush();
    DIFFQ_CHECK(out.good(), "cannot write '", tmp, "'");
  }
  commit_file(tmp, path);
}

}  // namespace train
}  // namespace diffq
