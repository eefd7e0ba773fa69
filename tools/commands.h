#pragma once
// The subcommands of the `diffq` tool: each adds itself to the CLI11 app and
// returns how to run it once parsed (private to the tool).
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace diffq {
namespace cli {

/// A parsed subcommand's action: writes results to `out`, messages to
/// `err`; returns the exit status.
struct Command {
  /// The subcommand (parsed when chosen).
  CLI::App* app = nullptr;
  /// Runs it.
  std::function<int(std::ostream& out, std::ostream& err)> run;
};

/// `diffq train`.
Command add_train(CLI::App& app);
/// `diffq eval`.
Command add_eval(CLI::App& app);
/// `diffq inspect`.
Command add_inspect(CLI::App& app);
/// `diffq compress`.
Command add_compress(CLI::App& app);
/// `diffq summarize`.
Command add_summarize(CLI::App& app);
/// `diffq launch`.
Command add_launch(CLI::App& app);
/// `diffq list`.
Command add_list(CLI::App& app);
/// `diffq search`.
Command add_search(CLI::App& app);

/// "a, b, c".
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");

}  // namespace cli
}  // namespace diffq
