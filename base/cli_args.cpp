#include "base/cli_args.h"

#include <cstdio>
#include <exception>
#include <filesystem>

#include "base/error.h"

namespace osup {

CliArgs::CliArgs(const std::string& command, std::vector<std::string> args,
                 const std::set<std::string>& valued, const std::set<std::string>& flags)
    : CliArgs(command, std::move(args), valued, flags, false) {}

CliArgs CliArgs::leading(const std::string& command, std::vector<std::string> args,
                         const std::set<std::string>& valued, const std::set<std::string>& flags) {
  return CliArgs(command, std::move(args), valued, flags, true);
}

CliArgs::CliArgs(const std::string& command, std::vector<std::string> args,
                 const std::set<std::string>& valued, const std::set<std::string>& flags,
                 bool stop_at_positional)
    : command_(command) {
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (stop_at_positional && (a == "-" || a.rfind("--", 0) != 0)) {
      rest_.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      return;
    }
    if (only_positionals || a == "-" || a.rfind("--", 0) != 0) {
      if (a == "--" && !only_positionals) {
        only_positionals = true;
        continue;
      }
      positionals_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), val;
    bool has_inline = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      val = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    if (valued.count(name)) {
      if (!has_inline) {
        if (i + 1 >= args.size()) fail(command_ + ": --" + name + " needs a value");
        val = args[++i];
      }
      values_[name] = val;
    } else if (flags.count(name)) {
      if (has_inline) fail(command_ + ": --" + name + " takes no value");
      flags_set_.insert(name);
    } else {
      fail(command_ + ": unknown option --" + name + "; see --help");
    }
  }
}

std::optional<std::string> CliArgs::value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CliArgs::value_or(const std::string& name, const std::string& fallback) const {
  return value(name).value_or(fallback);
}

void CliArgs::expect_positionals(size_t min, size_t max, const std::string& usage) const {
  size_t n = positionals_.size();
  if (n < min || n > max)
    fail(command_ + ": expected " +
         (min == max ? std::to_string(min) : std::to_string(min) + "-" + std::to_string(max)) +
         " argument(s), got " + std::to_string(n) + " (usage: " + usage + ")");
}

std::string CliArgs::required(const std::string& name, const std::string& usage) const {
  auto v = value(name);
  if (!v) fail(command_ + ": --" + name + " is required (usage: " + usage + ")");
  return *v;
}

int run_cli(const char* tool, const std::function<int()>& command) {
  try {
    return command();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
  } catch (const std::filesystem::filesystem_error& e) {  // a failed file operation, not a bug
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", tool, e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: internal error: unknown exception\n", tool);
  }
  return 1;
}

}  // namespace osup
