// `osup fleet status [--json]`: per release of the group, the machines that took part and
// how they stand (waiting for a reboot slot, trying, good, rolled back), whether the
// release is halted, and who holds the reboot slots now. Read from etcd.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "updater/fleet/fleet_config.h"

namespace osup::fleet {

[[nodiscard]] nlohmann::json fleet_status_json(const FleetConfig& c);
void print_fleet_status(const nlohmann::json& j);
// osup fleet status [--json] [--config FILE]
int cmd_fleet(const std::vector<std::string>& args, const std::string& default_config);

}  // namespace osup::fleet
