// `osup apply FILE [--dry-run] [--json]`, `osup export` and `osup data backup|restore`
// (docs/machine.md).
#pragma once

#include <string>
#include <vector>

#include "base/progress.h"

namespace osup::machine {

// ARGS after "apply"; LOCK_WAIT as osup's --lock-wait.
int cmd_apply(const std::vector<std::string>& args, double lock_wait);
// ARGS after "export".
int cmd_export(const std::vector<std::string>& args);
// ARGS after "data".
int cmd_data(const std::vector<std::string>& args, ProgressMode progress);

}  // namespace osup::machine
