#include "updater/fleet/fleet_update.h"

#include <chrono>
#include <cstdio>

#include "base/error.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/fleetlock.h"

namespace osup::fleet {

std::unique_ptr<Fleet> join_fleet(const FleetConfig& c, const std::string& machine_id,
                                  const Log& log) {
  if (c.backend == FleetConfig::Backend::none) return nullptr;
  if (machine_id.empty())
    fail("a fleet needs this machine's id: /etc/machine-id is missing (pass --machine-id ID)");
  auto f = std::make_unique<Fleet>();
  f->config = c;
  if (const std::vector<std::string>& store = health_store(c); !store.empty()) {
    f->etcd = std::make_unique<EtcdClient>(EtcdOptions{store, etcd_http(c)});
    f->health = std::make_unique<RolloutHealth>(*f->etcd, c.group);
  }
  // The etcd_* certificates are etcd's: a FleetLock server is checked against the system CAs.
  if (c.backend == FleetConfig::Backend::etcd)
    f->slots = std::make_unique<EtcdRebootSlots>(*f->etcd, c.lease_ttl_s);
  else
    f->slots = std::make_unique<FleetLockSlots>(c.endpoints.front(), HttpOptions{});
  WaitPolicy wait;
  wait.max_wait_s = c.slot_wait_s;
  f->member = std::make_unique<FleetMember>(*f->slots, f->health.get(),
                                            SlotRequest{c.group, machine_id, c.slots}, wait, log);
  return f;
}

SlotKeeper::SlotKeeper(RebootSlots& slots, SlotRequest who, int lease_ttl_s) {
  t_ = std::thread([this, &slots, who = std::move(who), lease_ttl_s] {
    std::unique_lock lock(m_);
    while (!cv_.wait_for(lock, std::chrono::seconds(std::max(1, lease_ttl_s / 3)),
                         [this] { return stop_; })) {
      try {
        slots.keep_alive(who);
      } catch (const Error&) {  // the next round tries again; the lease has slack
      }
    }
  });
}

SlotKeeper::~SlotKeeper() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  t_.join();
}

namespace {

HealthThreshold threshold_of(const ChannelRelease& r) {
  return {r.halt_after_failures, r.halt_failure_percent};
}

}  // namespace

void attach_update_hooks(UpdateOptions& o, Fleet& f, std::unique_ptr<SlotKeeper>& keeper) {
  o.check_release = [&f](const ChannelRelease& r) {
    return f.member->check(r.version, threshold_of(r));
  };
  const std::string state_dir = o.state_dir;
  o.before_install = [&f, &keeper, state_dir](const ChannelRelease& r) {
    std::string why = f.member->begin(r.version);
    if (!why.empty()) return why;
    // From here a slot is held: mark-good, after the reboot (or a crash), closes the trial.
    save_trial(state_dir, FleetTrial{r.version, f.config.group, threshold_of(r)});
    keeper = std::make_unique<SlotKeeper>(*f.slots, f.member->who(), f.config.lease_ttl_s);
    return std::string();
  };
}

void note_installed(const std::string& state_dir) {
  std::optional<FleetTrial> t = load_trial(state_dir);
  if (!t) return;
  t->installed = true;
  save_trial(state_dir, *t);
}

void abandon_trial(Fleet& f, const std::string& state_dir) {
  try {
    const std::optional<FleetTrial> trial = load_trial(state_dir);
    clear_trial(state_dir);
    if (f.health && trial)
      f.health->record(trial->version, f.member->who().machine, MachineState::waiting);
    f.slots->release(f.member->who());
  } catch (const Error&) {
  }
}

std::string after_boot_judged(bool good, const FleetConfig& c, const std::string& state_dir,
                              const std::string& machine_id,
                              const std::function<std::string()>& running_version) {
  try {
    const std::optional<FleetTrial> trial = load_trial(state_dir);
    if (!trial) return "";
    FleetConfig cc = c;
    cc.group = trial->group;
    const std::unique_ptr<Fleet> f = join_fleet(cc, machine_id, {});
    if (!f) {
      clear_trial(state_dir);
      return "";
    }
    // On the version tried: good or bad as judged. On another version after the install:
    // the loader went back to the old slot by itself. Before the install finished (a
    // crash or an error): the release was never tried; the slot is just given back.
    const std::string running = running_version();
    if (running == trial->version && good)
      f->member->end_good(trial->version);
    else if (running == trial->version || trial->installed)
      f->member->end_rolled_back(trial->version, trial->threshold);
    else
      abandon_trial(*f, state_dir);
    clear_trial(state_dir);
    return "";
  } catch (const Error& e) {
    return std::string("fleet: could not record the outcome or give the reboot slot back (") +
           e.what() + "); its lease frees the slot, and the next mark-good tries again";
  }
}

}  // namespace osup::fleet
