// Reboot slots from a FleetLock server (the protocol of Fedora CoreOS's Zincati, served by
// airlock and others): POST /v1/pre-reboot takes a slot, POST /v1/steady-state gives it
// back, both with the header `fleet-lock-protocol: true` and the body
// {"client_params":{"node_uuid":"<machine>","group":"<group>"}}. A 200 means done; any
// other status means not now (the server's JSON {"kind","value"} says why). The number of
// slots is the server's setting, so SlotRequest::max is not sent.
#pragma once

#include <string>

#include "updater/fleet/reboot_slots.h"
#include "updater/http.h"

namespace osup::fleet {

class FleetLockSlots final : public RebootSlots {
 public:
  FleetLockSlots(std::string base_url, HttpOptions http);
  SlotAnswer try_acquire(const SlotRequest& r) override;
  void release(const SlotRequest& r) override;
  std::vector<std::string> holders(const std::string&) override { return {}; }
  // The server's last "not now" in words ("" after a success).
  [[nodiscard]] const std::string& last_refusal() const { return refusal_; }

 private:
  HttpPostResult post(const std::string& op, const SlotRequest& r);
  std::string base_;
  HttpOptions http_;
  std::string refusal_;
};

}  // namespace osup::fleet
