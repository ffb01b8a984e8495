#include "updater/fleet/rollout_health.h"

#include "updater/fleet/etcd_reboot_slots.h"

namespace osup::fleet {

const char* to_string(MachineState s) {
  switch (s) {
    case MachineState::waiting:
      return "waiting";
    case MachineState::trying:
      return "trying";
    case MachineState::good:
      return "good";
    case MachineState::rolled_back:
      return "rolled-back";
  }
  return "?";
}

std::optional<MachineState> parse_machine_state(const std::string& s) {
  for (MachineState m :
       {MachineState::waiting, MachineState::trying, MachineState::good, MachineState::rolled_back})
    if (s == to_string(m)) return m;
  return std::nullopt;
}

std::string describe(const HealthThreshold& t) {
  std::string out;
  if (t.halt_after_failures) out = "after " + std::to_string(*t.halt_after_failures) + " failures";
  if (t.halt_failure_percent)
    out +=
        (out.empty() ? "at " : " or at ") + std::to_string(*t.halt_failure_percent) + "% failures";
  return out;
}

std::string over_threshold(const ReleaseTally& t, const HealthThreshold& h) {
  const std::string failed = std::to_string(t.rolled_back) + " of " + std::to_string(t.started()) +
                             " machines that tried it rolled back";
  if (h.halt_after_failures && t.rolled_back >= *h.halt_after_failures)
    return failed + " (the channel halts it after " + std::to_string(*h.halt_after_failures) +
           " failures)";
  if (h.halt_failure_percent && t.rolled_back > 0 &&
      t.rolled_back * 100 >= *h.halt_failure_percent * t.started())
    return failed + " (the channel halts it at " + std::to_string(*h.halt_failure_percent) +
           "% failures)";
  return "";
}

std::string RolloutHealth::record_key(const std::string& version,
                                      const std::string& machine) const {
  return fleet_prefix(group_) + "releases/" + version + "/" + machine;
}

std::string RolloutHealth::halt_key(const std::string& version) const {
  return fleet_prefix(group_) + "halted/" + version;
}

std::map<std::string, ReleaseTally> RolloutHealth::all() {
  std::map<std::string, ReleaseTally> out;
  const std::string releases = fleet_prefix(group_) + "releases/";
  for (const EtcdKv& kv : etcd_.range_prefix(releases)) {
    const std::string rest = kv.key.substr(releases.size());
    ReleaseTally& t = out[rest.substr(0, rest.find('/'))];
    switch (parse_machine_state(kv.value).value_or(MachineState::waiting)) {
      case MachineState::waiting:
        ++t.waiting;
        break;
      case MachineState::trying:
        ++t.trying;
        break;
      case MachineState::good:
        ++t.good;
        break;
      case MachineState::rolled_back:
        ++t.rolled_back;
        break;
    }
  }
  const std::string halted = fleet_prefix(group_) + "halted/";
  for (const EtcdKv& kv : etcd_.range_prefix(halted))
    out[kv.key.substr(halted.size())].halted = true;
  return out;
}

ReleaseTally RolloutHealth::tally(const std::string& version) {
  ReleaseTally t;
  const std::string prefix = fleet_prefix(group_) + "releases/" + version + "/";
  for (const EtcdKv& kv : etcd_.range_prefix(prefix)) {
    const auto s = parse_machine_state(kv.value);
    if (s == MachineState::waiting) ++t.waiting;
    if (s == MachineState::trying) ++t.trying;
    if (s == MachineState::good) ++t.good;
    if (s == MachineState::rolled_back) ++t.rolled_back;
  }
  t.halted = etcd_.get(halt_key(version)).has_value();
  return t;
}

void RolloutHealth::record(const std::string& version, const std::string& machine, MachineState s) {
  (void)etcd_.put(record_key(version, machine), to_string(s));
}

bool RolloutHealth::start(const std::string& version, const std::string& machine) {
  return etcd_.txn({{EtcdCompare::What::absent, halt_key(version), ""}},
                   {{false, record_key(version, machine), to_string(MachineState::trying), 0}});
}

void RolloutHealth::record_failure(const std::string& version, const std::string& machine,
                                   const HealthThreshold& t) {
  record(version, machine, MachineState::rolled_back);
  const std::string why = over_threshold(tally(version), t);
  if (!why.empty())
    (void)etcd_.txn({{EtcdCompare::What::absent, halt_key(version), ""}},
                    {{false, halt_key(version), why, 0}});
}

std::string RolloutHealth::refusal(const std::string& version, const HealthThreshold& t) {
  const ReleaseTally tally_now = tally(version);
  std::string why = over_threshold(tally_now, t);
  if (why.empty() && tally_now.halted) {
    const auto k = etcd_.get(halt_key(version));
    why = k ? k->value : "it was halted";
  }
  if (why.empty()) return "";
  return "not starting " + version + ": its rollout in group " + group_ + " is halted: " + why;
}

}  // namespace osup::fleet
