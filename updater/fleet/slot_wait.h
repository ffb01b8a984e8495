// Waiting for a reboot slot: try, and while every slot is taken or the backend cannot be
// reached, sleep with a growing, jittered backoff and try again, until a slot is held or
// the wait runs out. Never says yes without a slot.
#pragma once

#include <functional>
#include <string>

#include "updater/fleet/reboot_slots.h"

namespace osup::fleet {

struct WaitPolicy {
  double first_backoff_s = 1;
  double max_backoff_s = 30;
  double max_wait_s = 3600;  // 0: one try only
};

struct WaitOutcome {
  SlotAnswer answer;  // held, or the last holders seen
  double waited_s = 0;
  int tries = 0;
  std::string last_error;  // the backend's last failure, when it failed
};

// The line that says a machine waits, naming who holds the slots (etcd) or the server's
// reason (FleetLock).
[[nodiscard]] std::string busy_line(const SlotRequest& r, const SlotAnswer& a);

// log (may be empty) gets one line when the wait starts and whenever the backend's
// state changes (unreachable, reachable again).
using Log = std::function<void(const std::string&)>;
WaitOutcome wait_for_slot(RebootSlots& slots, const SlotRequest& r, const WaitPolicy& p,
                          const Log& log = {});

}  // namespace osup::fleet
