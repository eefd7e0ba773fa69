// The `diffq` command-line tool: the subcommands, parsing and error reporting.
#include "cli.h"

#include <iostream>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "commands.h"
#include "diffq/error.h"

namespace diffq {
namespace cli {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string s;
  for (const auto& x : items) s += (s.empty() ? "" : separator) + x;
  return s;
}

namespace {

// The first line of a message (LibTorch appends its backtrace on the next ones).
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"diffq: differentiable model compression (DiffQ) and its baselines on LibTorch"};
  app.name("diffq");
  app.require_subcommand(1);
  app.fallthrough(false);
  bool verbose = false;
  app.add_flag("--verbose", verbose, "errors: the whole message (LibTorch's backtrace included)");
  const std::vector<Command> commands = {add_train(app),    add_eval(app),      add_inspect(app),
                                         add_compress(app), add_summarize(app), add_launch(app),
                                         add_list(app),     add_search(app)};
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  try {
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run(out, err);
  } catch (const Error& e) {
    err << "diffq: error: " << (verbose ? e.what() : first_line(e.what())) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    err << "diffq: error: " << (verbose ? e.what() : first_line(e.what_without_backtrace())) << "\n";
    return 1;
  } catch (const std::exception& e) {
    err << "diffq: error: " << (verbose ? e.what() : first_line(e.what())) << "\n";
    return 1;
  }
  return 0;
}

}  // namespace cli
}  // namespace diffq
