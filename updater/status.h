// `osup status`: slots, versions, states, the loader's next pick and data usage, as the
// JSON document `--json` prints and as the short text a person reads.
#pragma once

#include <nlohmann/json.hpp>

#include "boot/boot_control.h"
#include "updater/disk.h"

namespace osup {

[[nodiscard]] nlohmann::json status_json(const OsupDisk& disk, const BootControl& boot);
void print_status(const nlohmann::json& status);

}  // namespace osup
