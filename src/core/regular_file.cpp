// Refusing paths that are not regular files (see include/diffq/regular_file.h).
#include "diffq/regular_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "diffq/error.h"

namespace diffq {

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat info {};
  DIFFQ_CHECK(::stat(path.c_str(), &info) == 0, "cannot open ", what, " '", path, "': ", std::strerror(errno));
  DIFFQ_CHECK(!S_ISDIR(info.st_mode), what, " '", path, "' is a directory, not a file");
  DIFFQ_CHECK(S_ISREG(info.st_mode), what, " '", path, "' is not a regular file (a FIFO, socket or device)");
}

}  // namespace diffq
