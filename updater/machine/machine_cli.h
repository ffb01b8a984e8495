// `osup apply FILE [--dry-run] [--json]` (docs/machine.md).
#pragma once

#include <string>
#include <vector>

namespace osup::machine {

// ARGS after "apply"; LOCK_WAIT as osup's --lock-wait.
int cmd_apply(const std::vector<std::string>& args, double lock_wait);

}  // namespace osup::machine
