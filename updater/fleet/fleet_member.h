// What one machine does in its fleet around an update, on a RebootSlots backend and (with
// etcd) the rollout health records. `osup update` and the fleet simulation both run it:
//   check(v)     before downloading: may this release be started at all?
//   begin(v)     before the new slot becomes the next boot: wait for a reboot slot and
//                record `trying`; a slot is held when it says yes.
//   end_good(v), end_rolled_back(v)  after the new boot is judged: record, give the slot back.
// The trial in progress is kept in STATE_DIR/fleet.json, so mark-good and mark-bad (other
// processes, after a reboot) know which release to record and that a slot is held.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "updater/fleet/reboot_slots.h"
#include "updater/fleet/rollout_health.h"
#include "updater/fleet/slot_wait.h"

namespace osup::fleet {

class FleetMember {
 public:
  // health may be null (FleetLock has no place for records): then no health checks.
  FleetMember(RebootSlots& slots, RolloutHealth* health, SlotRequest who, WaitPolicy wait,
              Log log = {})
      : slots_(slots), health_(health), who_(std::move(who)), wait_(wait), log_(std::move(log)) {}

  // "" when `version` may be started; else one line saying why not.
  [[nodiscard]] std::string check(const std::string& version, const HealthThreshold& t);
  // "" when this machine now holds a slot and is recorded trying `version`; else why not
  // (no slot within the wait, the release halted meanwhile), and it holds no slot.
  [[nodiscard]] std::string begin(const std::string& version);
  void end_good(const std::string& version);
  void end_rolled_back(const std::string& version, const HealthThreshold& t);
  // The last wait for a slot (for the simulation's figures).
  [[nodiscard]] const WaitOutcome& last_wait() const { return wait_out_; }
  [[nodiscard]] const SlotRequest& who() const { return who_; }
  [[nodiscard]] RebootSlots& slots() { return slots_; }

 private:
  bool record_start(const std::string& version);
  RebootSlots& slots_;
  RolloutHealth* health_;
  SlotRequest who_;
  WaitPolicy wait_;
  Log log_;
  WaitOutcome wait_out_;
};

// The release this machine is trying, kept across the reboot. installed: the new slot was
// written and made the next boot (before that, being back on the old version is no
// failure of the release).
struct FleetTrial {
  std::string version, group;
  HealthThreshold threshold;
  bool installed = false;
};
void save_trial(const std::string& state_dir, const FleetTrial& t);
[[nodiscard]] std::optional<FleetTrial> load_trial(const std::string& state_dir);
void clear_trial(const std::string& state_dir);

}  // namespace osup::fleet
