// The fleet around osup's own commands: joining the fleet update.conf names, the hooks
// `osup update` runs (health check before the download, reboot slot before the new slot
// is written and made the next boot), a lease kept alive meanwhile, and what mark-good
// and mark-bad record once the new boot is judged.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "updater/fleet/etcd_client.h"
#include "updater/fleet/fleet_config.h"
#include "updater/fleet/fleet_member.h"
#include "updater/update.h"

namespace osup::fleet {

struct Fleet {
  FleetConfig config;
  std::unique_ptr<EtcdClient> etcd;  // null for FleetLock without fleet_health_endpoints
  std::unique_ptr<RebootSlots> slots;
  std::unique_ptr<RolloutHealth> health;  // null when etcd is
  std::unique_ptr<FleetMember> member;
};

// Null when update.conf names no fleet.
[[nodiscard]] std::unique_ptr<Fleet> join_fleet(const FleetConfig& c, const std::string& machine_id,
                                                const Log& log);

// Refreshes this machine's slot every third of the lease TTL while it lives.
class SlotKeeper {
 public:
  SlotKeeper(RebootSlots& slots, SlotRequest who, int lease_ttl_s);
  ~SlotKeeper();
  SlotKeeper(const SlotKeeper&) = delete;
  SlotKeeper& operator=(const SlotKeeper&) = delete;

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread t_;
};

// Sets o.check_release and o.before_install; the trial is saved in state_dir before the
// install begins. keeper receives the SlotKeeper started once a slot is held.
void attach_update_hooks(UpdateOptions& o, Fleet& f, std::unique_ptr<SlotKeeper>& keeper);

// The new slot is written and is the next boot: the trial counts from now on.
void note_installed(const std::string& state_dir);

// The update stopped after the slot was taken (an install error): give the slot back,
// forget the trial. Never throws (the lease frees the slot anyway).
void abandon_trial(Fleet& f, const std::string& state_dir);

// After mark-good / mark-bad: with a trial saved, records its outcome and gives the slot
// back. running_version is asked only then. Never throws: a fleet that cannot be reached
// must not block a boot (the slot's lease frees it); returns a warning line, or "".
std::string after_boot_judged(bool good, const FleetConfig& c, const std::string& state_dir,
                              const std::string& machine_id,
                              const std::function<std::string()>& running_version);

}  // namespace osup::fleet
