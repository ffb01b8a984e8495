// A small command-line parser shared by osup and osup-build: "--name value", "--name=value",
// boolean "--flag", positionals, and a one-line error for anything unknown or missing.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace osup {

class CliArgs {
 public:
  // `valued` options take a value; `flags` do not. "-" alone is a positional (stdin).
  CliArgs(const std::string& command, std::vector<std::string> args,
          const std::set<std::string>& valued, const std::set<std::string>& flags);
  // Options before a command ("osup --disk X status --json"): parsing stops at the first
  // positional, which with everything after it is left in rest().
  [[nodiscard]] static CliArgs leading(const std::string& command, std::vector<std::string> args,
                                       const std::set<std::string>& valued,
                                       const std::set<std::string>& flags);

  [[nodiscard]] std::optional<std::string> value(const std::string& name) const;
  [[nodiscard]] std::string value_or(const std::string& name, const std::string& fallback) const;
  [[nodiscard]] bool flag(const std::string& name) const { return flags_set_.count(name) > 0; }
  [[nodiscard]] const std::vector<std::string>& positionals() const { return positionals_; }
  [[nodiscard]] const std::vector<std::string>& rest() const { return rest_; }
  // Throws "COMMAND: expected N argument(s) (USAGE), got M" unless min <= count <= max.
  void expect_positionals(size_t min, size_t max, const std::string& usage) const;
  // Throws "COMMAND: --name is required (USAGE)".
  [[nodiscard]] std::string required(const std::string& name, const std::string& usage) const;

 private:
  CliArgs(const std::string& command, std::vector<std::string> args,
          const std::set<std::string>& valued, const std::set<std::string>& flags,
          bool stop_at_positional);
  std::string command_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_set_;
  std::vector<std::string> positionals_, rest_;
};

// What both tools' main() does with a command: runs it and turns any exception into one
// line on stderr, "TOOL: what failed" (an osup::Error) or "TOOL: internal error: ..."
// (anything else, a bug), and exit status 1.
[[nodiscard]] int run_cli(const char* tool, const std::function<int()>& command);

}  // namespace osup
