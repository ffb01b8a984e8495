#include "updater/fleet/fleetlock.h"

#include <nlohmann/json.hpp>

#include "base/error.h"

using nlohmann::json;

namespace osup::fleet {

FleetLockSlots::FleetLockSlots(std::string base_url, HttpOptions http)
    : base_(std::move(base_url)), http_(std::move(http)) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
  if (http_.timeout_s == 0) http_.timeout_s = 30;
}

HttpPostResult FleetLockSlots::post(const std::string& op, const SlotRequest& r) {
  const json body{{"client_params", {{"node_uuid", r.machine}, {"group", r.group}}}};
  HttpPostResult a = http_post_once(base_ + op, body.dump(),
                                    {"fleet-lock-protocol: true", "Content-Type: application/json"},
                                    64u << 10, http_);
  if (!a.ok && a.status == 0) fail("FleetLock server: " + a.error);
  if (!a.ok && a.status >= 500) fail("FleetLock server: " + a.error);
  return a;
}

SlotAnswer FleetLockSlots::try_acquire(const SlotRequest& r) {
  const HttpPostResult a = post("/v1/pre-reboot", r);
  refusal_.clear();
  if (a.ok) return {true, -1, {}};
  refusal_ = a.error;
  try {
    const json j = json::parse(a.body);
    refusal_ = j.value("kind", "") + ": " + j.value("value", "");
  } catch (const json::exception&) {
  }
  SlotAnswer no;
  no.refusal = refusal_;
  return no;
}

void FleetLockSlots::release(const SlotRequest& r) {
  const HttpPostResult a = post("/v1/steady-state", r);
  if (!a.ok)
    fail("FleetLock server refused to release the reboot slot of " + r.machine + ": " + a.error);
}

}  // namespace osup::fleet
