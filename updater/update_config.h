// /etc/osup/update.conf: where updates come from, and whether the timer installs them.
//   channel = https://updates.example.com/stable/   (the channel directory's URL)
//   ca = /etc/osup/channel-ca.pem                   (optional: trust only this CA)
//   timer = on|off                                  (unattended updates; default off)
//   fleet = etcd | fleetlock | none, fleet_* and etcd_* keys    (updater/fleet/fleet_config.h)
// One "key = value" per line, '#' starts a comment. Unknown keys are errors.
#pragma once

#include <optional>
#include <string>

#include "updater/fleet/fleet_config.h"

namespace osup {

struct UpdateConfig {
  std::optional<std::string> channel, ca;
  bool timer = false;
  FleetConfig fleet;
};

inline constexpr const char* kUpdateConfigPath = "/etc/osup/update.conf";

// A missing file gives the defaults; a bad line is one error naming file and line.
[[nodiscard]] UpdateConfig read_update_config(const std::string& path);
[[nodiscard]] UpdateConfig parse_update_config(const std::string& text, const std::string& what);

}  // namespace osup
