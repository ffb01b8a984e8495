// The fleet keys of /etc/osup/update.conf (docs/fleet.md):
//   fleet = etcd | fleetlock | none        reboot coordination backend (default none)
//   fleet_endpoints = URL[, URL...]        etcd members, or the one FleetLock server
//   fleet_group = NAME                     machines sharing the reboot slots (default "default")
//   fleet_slots = N                        machines rebooting at once (etcd; default 1)
//   fleet_health_endpoints = URL[, URL...] etcd members for rollout health beside FleetLock
//   fleet_lease_ttl = SECONDS              how long a slot outlives a silent holder (default 900)
//   fleet_slot_wait = SECONDS              how long an update waits for a slot (default 3600)
//   etcd_ca, etcd_cert, etcd_key = PATH    TLS to etcd: its CA, this machine's certificate
#pragma once

#include <string>
#include <vector>

#include "updater/http.h"

namespace osup {

struct FleetConfig {
  enum class Backend { none, etcd, fleetlock } backend = Backend::none;
  std::vector<std::string> endpoints;
  std::string group = "default";
  int slots = 1;
  bool slots_given = false;                   // FleetLock's server owns the number
  std::vector<std::string> health_endpoints;  // rollout health on etcd, for fleet = fleetlock
  int lease_ttl_s = 900;
  int slot_wait_s = 3600;
  std::string etcd_ca, etcd_cert, etcd_key;
};

// Takes one key of update.conf; false when it is not a fleet key. A bad value is one
// error naming `where` (the file and line).
bool parse_fleet_key(FleetConfig& c, const std::string& key, const std::string& value,
                     const std::string& where);
// Where rollout health is kept: etcd's members (fleet_endpoints for etcd,
// fleet_health_endpoints beside FleetLock); empty when nowhere.
[[nodiscard]] const std::vector<std::string>& health_store(const FleetConfig& c);
// TLS to etcd from etcd_ca, etcd_cert and etcd_key.
[[nodiscard]] HttpOptions etcd_http(const FleetConfig& c);
// The settings taken together (a backend without endpoints, a certificate without its
// key); one error naming the file.
void check_fleet_config(const FleetConfig& c, const std::string& what);

}  // namespace osup
