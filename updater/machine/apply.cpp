#include "updater/machine/apply.h"

#include <algorithm>
#include <map>
#include <set>

#include "base/error.h"

namespace osup::machine {
namespace {

MachineBackend* backend_for(const Backends& backends, Kind kind) {
  for (MachineBackend* b : backends) {
    const auto kinds = b->kinds();
    if (std::find(kinds.begin(), kinds.end(), kind) != kinds.end()) return b;
  }
  return nullptr;
}

std::string no_backend(Kind kind) {
  if (kind == Kind::remote || kind == Kind::flatpak)
    return "nothing here installs Flatpak apps (apps section); remove the apps section to "
           "apply the rest";
  return "nothing in this osup installs a " + to_string(kind);
}

}  // namespace

Plan plan_machine(const MachineConfig& config, const MachineState& recorded,
                  const Backends& backends) {
  const std::vector<Resource> desired = desired_resources(config);
  std::set<Kind> kinds;
  for (const Resource& r : desired) kinds.insert(r.kind);
  for (const auto& [kind, names] : recorded.installed)
    for (Kind k : all_kinds())
      if (to_string(k) == kind && !names.empty()) kinds.insert(k);
  Observation seen;
  for (Kind k : kinds)
    if (MachineBackend* b = backend_for(backends, k))
      seen[k] = with_context("looking at the " + to_string(k) + "s", [&] { return b->observe(k); });
  Plan plan = make_plan(desired, recorded, seen);
  std::map<MachineBackend*, std::vector<Resource>> to_make;
  for (const Step& s : plan.steps) {
    if (s.action == Action::unchanged) continue;
    MachineBackend* b = backend_for(backends, s.resource.kind);
    if (!b) fail(no_backend(s.resource.kind));
    if (s.action != Action::remove) to_make[b].push_back(s.resource);
  }
  for (const auto& [b, resources] : to_make) b->check(resources, config);
  return plan;
}

void apply_plan(const Plan& plan, const MachineConfig& config, const Backends& backends,
                const std::string& state_path, MachineState& state,
                const std::function<void(const Step&)>& on_step) {
  const auto save = [&] { write_machine_state(state_path, state); };
  for (const Step& s : plan.steps) {
    const Resource& r = s.resource;
    auto& names = state.installed[to_string(r.kind)];
    if (s.action == Action::unchanged) {
      if (names.count(r.name) && names[r.name] == r.fingerprint) continue;
      names[r.name] = r.fingerprint;  // found as the file wants it (a crash after create)
      save();
      continue;
    }
    if (on_step) on_step(s);
    MachineBackend* b = backend_for(backends, r.kind);
    with_context(to_string(s.action) + " " + to_string(r.kind) + " '" + r.name + "'", [&] {
      if (s.action == Action::remove) {
        b->remove(r.kind, r.name);
        names.erase(r.name);
      } else {
        names[r.name] = "";  // osup's from now on, even if the next line is cut short
        save();
        if (s.action == Action::add)
          b->create(r, config);
        else
          b->update(r, config);
        names[r.name] = r.fingerprint;
      }
      save();
    });
  }
}

}  // namespace osup::machine
