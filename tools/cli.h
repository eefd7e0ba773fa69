#pragma once
/// \file cli.h
/// The `diffq` command-line tool as a function (the executable's `main`
/// calls it; tests call it in-process).

#include <iosfwd>
#include <string>
#include <vector>

namespace diffq {
namespace cli {

/// Runs the tool with `args` (without the program name); writes results to
/// `out` and messages to `err`; returns the exit status (0 on success, 1 on
/// an error, 2 on a bad command line, 130 when interrupted).
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace cli
}  // namespace diffq
