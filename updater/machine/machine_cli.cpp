#include "updater/machine/machine_cli.h"

#include <cstdio>

#include "base/cli_args.h"
#include "base/error.h"
#include "updater/lock.h"
#include "updater/machine/apply.h"
#include "updater/machine/podman_backend.h"

namespace osup::machine {

int cmd_apply(const std::vector<std::string>& args, double lock_wait) {
  const std::string usage = "osup apply FILE [--dry-run] [--json] [--state FILE] [--unit-dir DIR]";
  CliArgs a("osup apply", args, {"state", "unit-dir"}, {"dry-run", "json"});
  a.expect_positionals(1, 1, usage);
  const std::string file = a.positionals()[0];
  const std::string state_path = a.value_or("state", kMachineStatePath);
  const bool json_out = a.flag("json"), dry = a.flag("dry-run");
  // The file is checked whole before anything is looked at or changed.
  const MachineConfig config = read_machine_config(file);
  std::optional<DiskLock> lock;
  if (!dry) lock.emplace(state_path, "apply", lock_wait);
  MachineState state = read_machine_state(state_path);
  PodmanOptions po;
  po.unit_dir = a.value_or("unit-dir", po.unit_dir);
  po.systemd = systemd_running() && !a.value("unit-dir");
  PodmanBackend podman(po);
  const Backends backends = {&podman};
  const Plan plan = plan_machine(config, state, backends);
  if (json_out) {
    nlohmann::json j = plan_json(plan);
    j["dry_run"] = dry;
    if (!dry) apply_plan(plan, config, backends, state_path, state);
    j["applied"] = !dry;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s", plan_text(plan).c_str());
  if (dry || plan.nothing_to_do()) return 0;
  std::fflush(stdout);
  size_t done = 0;
  apply_plan(plan, config, backends, state_path, state, [&](const Step& s) {
    std::fprintf(stderr, "osup: [%zu/%zu] %s %s %s\n", ++done, plan.changes(),
                 to_string(s.action).c_str(), to_string(s.resource.kind).c_str(),
                 s.resource.name.c_str());
  });
  std::printf("applied %zu change(s)\n", plan.changes());
  return 0;
}

}  // namespace osup::machine
