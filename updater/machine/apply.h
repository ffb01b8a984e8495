// `osup apply`: the plan from the file, the record and the backends; then its steps, one
// at a time, with the record kept so that an interrupted apply is finished by the next.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "updater/machine/backend.h"
#include "updater/machine/machine_config.h"
#include "updater/machine/machine_state.h"
#include "updater/machine/plan.h"

namespace osup::machine {

using Backends = std::vector<MachineBackend*>;

// Observes only the kinds the file or the record mentions, so a machine without podman
// can apply a file without containers. Throws when a kind that must change has no backend.
[[nodiscard]] Plan plan_machine(const MachineConfig& config, const MachineState& recorded,
                                const Backends& backends);

// Runs the plan's changes in order; each step's name enters the record (with an empty
// fingerprint) before it is created and leaves it after it was removed. `on_step` is
// called before each change (progress).
void apply_plan(const Plan& plan, const MachineConfig& config, const Backends& backends,
                const std::string& state_path, MachineState& state,
                const std::function<void(const Step&)>& on_step = {});

}  // namespace osup::machine
