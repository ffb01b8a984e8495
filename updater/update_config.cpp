#include "updater/update_config.h"

#include <filesystem>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"

namespace osup {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

UpdateConfig parse_update_config(const std::string& text, const std::string& what) {
  UpdateConfig c;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string where = what + " line " + std::to_string(n);
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) fail(where + ": expected 'key = value', got '" + line + "'");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (value.empty()) fail(where + ": '" + key + "' has no value");
    if (key == "channel") {
      if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0)
        fail(where + ": channel must be an http:// or https:// URL, not '" + value + "'");
      c.channel = value;
    } else if (key == "ca") {
      c.ca = value;
    } else if (key == "timer") {
      if (value != "on" && value != "off")
        fail(where + ": timer must be on or off, not '" + value + "'");
      c.timer = value == "on";
    } else if (!parse_fleet_key(c.fleet, key, value, where)) {
      fail(where + ": unknown key '" + key +
           "'; known keys are channel, ca, timer, fleet, fleet_endpoints, fleet_group, "
           "fleet_slots, fleet_health_endpoints, fleet_lease_ttl, fleet_slot_wait, etcd_ca, "
           "etcd_cert, etcd_key");
    }
  }
  check_fleet_config(c.fleet, what);
  return c;
}

UpdateConfig read_update_config(const std::string& path) {
  if (!std::filesystem::exists(path)) return {};
  return parse_update_config(read_text_file(path), path);
}

}  // namespace osup
