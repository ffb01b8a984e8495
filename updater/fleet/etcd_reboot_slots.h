// Reboot slots on etcd: slot i of group G is the key /osup/fleet/G/slots/i, whose value
// is the holder's machine id. It is taken by a transaction that puts it only while it
// does not exist (create_revision == 0), so two machines can never hold the same slot,
// and the put carries a lease of lease_ttl seconds: a machine that dies while it holds a
// slot (or whose new boot never comes up) loses it when the lease ends. The lease is kept
// alive while osup runs (keep_alive()) and must cover a reboot and the health checks.
#pragma once

#include <cstdint>
#include <string>

#include "updater/fleet/etcd_client.h"
#include "updater/fleet/reboot_slots.h"

namespace osup::fleet {

[[nodiscard]] std::string fleet_prefix(const std::string& group);
[[nodiscard]] std::string slots_prefix(const std::string& group);

class EtcdRebootSlots final : public RebootSlots {
 public:
  EtcdRebootSlots(EtcdClient& etcd, int64_t lease_ttl_s) : etcd_(etcd), ttl_(lease_ttl_s) {}
  SlotAnswer try_acquire(const SlotRequest& r) override;
  void release(const SlotRequest& r) override;
  std::vector<std::string> holders(const std::string& group) override;
  // Refreshes the lease of this machine's slot.
  void keep_alive(const SlotRequest& r) override;

 private:
  EtcdClient& etcd_;
  int64_t ttl_;
};

}  // namespace osup::fleet
