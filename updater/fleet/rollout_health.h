// Rollout health on etcd: every machine records what happened to the release it took,
// under /osup/fleet/<group>/releases/<version>/<machine> (waiting for a reboot slot,
// trying it, good, rolled back). Once the rolled-back machines pass the channel's
// threshold, the release is halted (/osup/fleet/<group>/halted/<version>); a machine
// records `trying` only in a transaction that checks the release is not halted, so no
// machine starts a halted release, however the checks and failures interleave.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "updater/fleet/etcd_client.h"

namespace osup::fleet {

enum class MachineState { waiting, trying, good, rolled_back };
[[nodiscard]] const char* to_string(MachineState s);
[[nodiscard]] std::optional<MachineState> parse_machine_state(const std::string& s);

// From the channel's release entry; unset = no limit.
struct HealthThreshold {
  std::optional<int> halt_after_failures;   // halt once this many rolled back
  std::optional<int> halt_failure_percent;  // halt once rolled back / started >= this %
};

// "after 3 failures", "at 5% failures", "after 3 failures or at 5% failures".
[[nodiscard]] std::string describe(const HealthThreshold& t);

struct ReleaseTally {
  int waiting = 0, trying = 0, good = 0, rolled_back = 0;
  bool halted = false;
  [[nodiscard]] int started() const { return trying + good + rolled_back; }
};

// "" when the failures are within t; else why the rollout stops, in words.
[[nodiscard]] std::string over_threshold(const ReleaseTally& tally, const HealthThreshold& t);

class RolloutHealth {
 public:
  RolloutHealth(EtcdClient& etcd, std::string group) : etcd_(etcd), group_(std::move(group)) {}

  [[nodiscard]] ReleaseTally tally(const std::string& version);
  [[nodiscard]] std::map<std::string, ReleaseTally> all();
  void record(const std::string& version, const std::string& machine, MachineState s);
  // Records `trying` unless the release is halted; false when it is.
  bool start(const std::string& version, const std::string& machine);
  // Records `rolled-back`; halts the release when the failures now pass t.
  void record_failure(const std::string& version, const std::string& machine,
                      const HealthThreshold& t);
  // "" when this release may be started; else one line saying why not.
  [[nodiscard]] std::string refusal(const std::string& version, const HealthThreshold& t);

 private:
  std::string record_key(const std::string& version, const std::string& machine) const;
  std::string halt_key(const std::string& version) const;
  EtcdClient& etcd_;
  std::string group_;
};

}  // namespace osup::fleet
