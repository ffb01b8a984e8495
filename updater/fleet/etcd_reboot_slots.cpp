#include "updater/fleet/etcd_reboot_slots.h"

#include <functional>

#include "base/error.h"

namespace osup::fleet {

std::string fleet_prefix(const std::string& group) { return "/osup/fleet/" + group + "/"; }
std::string slots_prefix(const std::string& group) { return fleet_prefix(group) + "slots/"; }

namespace {

const EtcdKv* own_slot(const std::vector<EtcdKv>& kvs, const std::string& machine) {
  for (const EtcdKv& kv : kvs)
    if (kv.value == machine) return &kv;
  return nullptr;
}

int slot_number(const std::string& group, const std::string& key) {
  return std::stoi(key.substr(slots_prefix(group).size()));
}

}  // namespace

SlotAnswer EtcdRebootSlots::try_acquire(const SlotRequest& r) {
  if (r.max < 1) fail("reboot slots: the group needs at least 1 slot");
  const std::vector<EtcdKv> taken = etcd_.range_prefix(slots_prefix(r.group));
  SlotAnswer a;
  if (const EtcdKv* mine = own_slot(taken, r.machine)) {  // re-entrant: a rerun keeps it
    if (mine->lease) (void)etcd_.keep_alive(mine->lease);
    return {true, slot_number(r.group, mine->key), {}};
  }
  for (const EtcdKv& kv : taken) a.holders.push_back(kv.value);
  std::vector<bool> busy(static_cast<size_t>(r.max), false);
  for (const EtcdKv& kv : taken) {
    const int i = slot_number(r.group, kv.key);
    if (i >= 0 && i < r.max) busy[static_cast<size_t>(i)] = true;
  }
  // Start at a slot picked by the machine id, so waiting machines do not all race for
  // the same free key.
  const size_t start = std::hash<std::string>{}(r.machine) % busy.size();
  int64_t lease = 0;
  for (size_t k = 0; k < busy.size(); ++k) {
    const size_t i = (start + k) % busy.size();
    if (busy[i]) continue;
    if (!lease) lease = etcd_.grant_lease(ttl_);
    const std::string key = slots_prefix(r.group) + std::to_string(i);
    if (etcd_.txn({{EtcdCompare::What::absent, key, ""}}, {{false, key, r.machine, lease}}))
      return {true, static_cast<int>(i), {}};
  }
  if (lease) etcd_.revoke(lease);
  return a;
}

void EtcdRebootSlots::release(const SlotRequest& r) {
  for (const EtcdKv& kv : etcd_.range_prefix(slots_prefix(r.group))) {
    if (kv.value != r.machine) continue;
    // Revoking the lease deletes the key with it, in one request. Only this machine's own
    // lease: had it expired and the slot gone to another machine, that key has the other
    // machine's lease and value, and this loop does not see it as ours.
    if (kv.lease)
      etcd_.revoke(kv.lease);
    else
      (void)etcd_.txn({{EtcdCompare::What::value_equals, kv.key, r.machine}},
                      {{true, kv.key, "", 0}});
  }
}

std::vector<std::string> EtcdRebootSlots::holders(const std::string& group) {
  std::vector<std::string> out;
  for (const EtcdKv& kv : etcd_.range_prefix(slots_prefix(group))) out.push_back(kv.value);
  return out;
}

void EtcdRebootSlots::keep_alive(const SlotRequest& r) {
  const std::vector<EtcdKv> taken = etcd_.range_prefix(slots_prefix(r.group));
  if (const EtcdKv* mine = own_slot(taken, r.machine); mine && mine->lease)
    (void)etcd_.keep_alive(mine->lease);
}

}  // namespace osup::fleet
