// The machine file written back from its types (osup export): what parse_machine_config
// reads, with defaults left out so an exported file reads like a hand-written one.
#pragma once

#include <nlohmann/json.hpp>

#include "updater/machine/machine_config.h"

namespace osup::machine {

[[nodiscard]] nlohmann::json container_json(const Container& c);
[[nodiscard]] nlohmann::json machine_config_json(const MachineConfig& config);

}  // namespace osup::machine
