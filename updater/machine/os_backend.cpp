#include "updater/machine/os_backend.h"

#include <filesystem>
#include <sstream>

#include "base/fd.h"
#include "updater/update_config.h"

namespace fs = std::filesystem;

namespace osup::machine {
namespace {

// The key of a "key = value" line, "" for comments and blank lines.
std::string key_of(const std::string& line) {
  const std::string code = line.substr(0, line.find('#'));
  const size_t eq = code.find('=');
  if (eq == std::string::npos) return "";
  const size_t b = code.find_first_not_of(" \t");
  const size_t e = code.find_last_not_of(" \t", eq - 1);
  return b == std::string::npos || b > e ? "" : code.substr(b, e - b + 1);
}

}  // namespace

std::string with_os_section(const std::string& text, const OsSection& os) {
  std::string out;
  std::istringstream in(text);
  bool channel_done = false, ca_done = !os.ca;
  for (std::string line; std::getline(in, line);) {
    const std::string key = key_of(line);
    if (key == "channel") {
      if (!channel_done) out += "channel = " + os.channel + "\n";
      channel_done = true;
    } else if (key == "ca") {
      if (!ca_done) out += "ca = " + *os.ca + "\n";
      ca_done = true;
    } else {
      out += line + "\n";
    }
  }
  if (!channel_done) out += "channel = " + os.channel + "\n";
  if (!ca_done) out += "ca = " + *os.ca + "\n";
  return out;
}

std::map<std::string, std::string> OsBackend::observe(Kind /*kind*/) {
  const UpdateConfig now = read_update_config(path_);
  const std::string fp = os_fingerprint(now.channel.value_or(""), now.ca.value_or(""));
  const bool as_wanted = desired_ && desired_->os &&
                         fp == os_fingerprint(desired_->os->channel, desired_->os->ca.value_or(""));
  // Not as wanted: not there (an add), unless the file no longer has an os section.
  if (as_wanted || !(desired_ && desired_->os)) return {{kOsResourceName, fp}};
  return {};
}

void OsBackend::create(const Resource& /*r*/, const MachineConfig& config) {
  const std::string old = fs::exists(path_) ? read_text_file(path_) : "";
  const std::string text = with_os_section(old, *config.os);
  (void)parse_update_config(text, path_);  // never write a file osup update would refuse
  fs::create_directories(fs::path(path_).parent_path());
  atomic_write_file(path_, text);
}

}  // namespace osup::machine
