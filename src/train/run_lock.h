#pragma once
// The lock that makes one process the owner of a run directory (private).
#include <string>

namespace diffq {
namespace train {

/// An advisory lock (`flock`) on `<dir>/lock`, held from construction to
/// destruction. The file records the owner's pid, which the error of a
/// second process names.
class RunLock {
 public:
  /// Takes the lock of `dir` (which must exist) without waiting; throws
  /// `diffq::Error` naming the other process when it is held.
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace train
}  // namespace diffq
