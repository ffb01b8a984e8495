// A fleet simulated on one machine for the tests: each machine is a thread that runs
// osup's own coordination code (FleetMember on EtcdRebootSlots and RolloutHealth, the
// release picked from a channel index fetched over HTTP) against a real etcd; boots and
// health results are simulated with sleeps. check_history() then replays etcd's revision
// history to see what happened at every instant.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "updater/fleet/etcd_client.h"
#include "updater/fleet/rollout_health.h"
#include "updater/fleet/slot_wait.h"

namespace osup::fleet::sim {

struct SimOptions {
  std::vector<std::string> endpoints;
  std::string group = "sim";
  int machines = 100, slots = 10;
  double boot_s = 0.2;        // install, reboot and health checks of a good boot
  double fail_s = 0.05;       // a boot that fails its health check says so sooner
  std::set<int> fail_starts;  // machines whose start (0 = first) fails its health check
  HealthThreshold threshold;
  std::string channel_url;  // serves index.json; "" = release "2.0.0" without a channel
  WaitPolicy wait{0.2, 2, 600};
  int64_t lease_ttl_s = 60;
  double start_spread_s = 0;  // machines start spread over this long (timers are not in step)
  std::function<void(int finished)> on_finish;  // after each machine ends (fault injection)
};

struct SimResult {
  int good = 0, rolled_back = 0, refused = 0;
  std::vector<std::string> errors;  // machines that failed in a way osup should not
  std::vector<std::string> refusals;
  double total_s = 0, longest_wait_s = 0;
  uint64_t requests = 0;  // to etcd, by all machines
};

SimResult run_fleet(const SimOptions& o);

struct History {
  int max_held = 0;     // reboot slots held at once, at any revision
  int max_trying = 0;   // machines recorded trying (rebooting into the release) at once
  int trying_puts = 0;  // machines that ever started the release
  int64_t last_trying_revision = 0, halt_revision = 0;
  size_t events = 0;
};

// Replays every change under the group's prefix from revision 1 (a fresh etcd).
History check_history(EtcdClient& etcd, const std::string& group, const std::string& version);

}  // namespace osup::fleet::sim
