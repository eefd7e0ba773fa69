// The lock that makes one process the owner of a run directory (see run_lock.h).
#include "run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "diffq/error.h"

namespace diffq {
namespace train {

namespace {

// The pid recorded in the lock file, or "unknown".
std::string recorded_pid(int fd) {
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  std::string pid(text, n > 0 ? size_t(n) : 0);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

RunLock::RunLock(const std::string& dir) {
  const std::string path = dir + "/lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  DIFFQ_CHECK(fd_ >= 0, "cannot open the lock file '", path, "': ", std::strerror(errno));
  int status;
  do status = ::flock(fd_, LOCK_EX | LOCK_NB);
  while (status != 0 && errno == EINTR);
  if (status != 0) {
    const int error = errno;
    const std::string other = recorded_pid(fd_);
    ::close(fd_);
    fd_ = -1;
    DIFFQ_CHECK(error != EWOULDBLOCK, "'", dir, "' is in use by another diffq run (pid ", other,
                "); wait for it to end or choose another --out");
    throw Error("cannot lock '" + path + "': " + std::strerror(error));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  // Best effort: without it, the lock is held all the same, only the pid
  // shown to another process is missing.
  const bool recorded = ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) == ssize_t(pid.size());
  (void)recorded;
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace train
}  // namespace diffq
