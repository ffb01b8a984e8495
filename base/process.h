// Running the real tools (mkfs.erofs, veritysetup, ...) without a shell, with errors
// that say which Debian package provides a missing tool.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace osup {

struct RunOptions {
  std::optional<std::string> stdin_data;  // fed to the child's stdin
  std::optional<std::string> cwd;
  std::map<std::string, std::string> env;  // added to (or overriding) the environment
  bool capture_stdout = true;              // false: child inherits our stdout
  bool capture_stderr = true;
  // Called with each complete line of captured stdout as it arrives (progress of a long run).
  std::function<void(const std::string&)> on_stdout_line;
};

struct RunResult {
  int exit_code = 0;  // 128+signal when killed
  std::string out;
  std::string err;
};

// Absolute path of a tool from PATH (plus /sbin, /usr/sbin), or nullopt. $OSUP_TOOL_PATH,
// when set, replaces that search path (tests simulate missing tools with it).
[[nodiscard]] std::optional<std::string> find_tool(const std::string& name);

// Like find_tool, but throws "mkfs.erofs not found; install the Debian package erofs-utils".
[[nodiscard]] std::string require_tool(const std::string& name);

// The Debian package that ships a tool we use, or "" when unknown.
[[nodiscard]] std::string debian_package_for(const std::string& tool);

// Runs argv (argv[0] looked up with require_tool). Never throws for a non-zero exit.
[[nodiscard]] RunResult run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// The last non-empty line of a tool's output, trimmed: what an error message quotes.
[[nodiscard]] std::string last_line(const std::string& s);

// Runs argv and throws "TOOL failed (exit N): <last stderr line>" on a non-zero exit.
RunResult run_checked(const std::vector<std::string>& argv, const RunOptions& opts = {});

}  // namespace osup
