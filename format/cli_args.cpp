#include "format/cli_args.h"

#include "format/error.h"

namespace osup {

CliArgs::CliArgs(const std::string& command, std::vector<std::string> args,
                 const std::set<std::string>& valued, const std::set<std::string>& flags)
    : command_(command) {
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
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

}  // namespace osup
