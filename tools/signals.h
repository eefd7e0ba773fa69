#pragma once
// SIGINT / SIGTERM in the `diffq` tool (private to the tool).

namespace diffq {
namespace cli {

/// Installs the tool's one handler of SIGINT and SIGTERM (at start, before
/// any subcommand runs). The first signal, while a `StopPoint` scope is
/// alive, prints one line and asks the command to stop at its next safe
/// point (`train::request_stop`); otherwise, or at the second signal, it
/// prints one line and exits at once with status 128 + the signal number.
void install_signal_handlers();

/// While alive, the running command stops at its own safe points (training:
/// the next step, after a checkpoint) instead of exiting at once.
class StopPoint {
 public:
  StopPoint();
  ~StopPoint();
  StopPoint(const StopPoint&) = delete;
  StopPoint& operator=(const StopPoint&) = delete;
};

}  // namespace cli
}  // namespace diffq
