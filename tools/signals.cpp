// SIGINT / SIGTERM in the `diffq` tool (see signals.h).
#include "signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "diffq/train/experiment.h"

namespace diffq {
namespace cli {

namespace {

std::atomic<int> g_signals{0};
std::atomic<bool> g_stoppable{false};

void say(const char* text) {
  const ssize_t written = ::write(2, text, std::strlen(text));
  (void)written;
}

extern "C" void on_signal(int sig) {
  const int seen = g_signals.fetch_add(1) + 1;
  if (seen == 1 && g_stoppable.load()) {
    say("\ndiffq: interrupted; stopping after the current step and saving a checkpoint "
        "(interrupt again to exit at once)\n");
    train::request_stop();
    return;
  }
  say(seen == 1 ? "\ndiffq: interrupted\n" : "\ndiffq: interrupted again; exiting at once\n");
  ::_exit(128 + sig);
}

}  // namespace

void install_signal_handlers() {
  static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
                "the handler's state must be lock-free");
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocking read returns with EINTR
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

StopPoint::StopPoint() { g_stoppable.store(true); }

StopPoint::~StopPoint() { g_stoppable.store(false); }

}  // namespace cli
}  // namespace diffq
