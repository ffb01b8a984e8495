#include "updater/fleet/fleet_config.h"

#include <charconv>
#include <sstream>

#include "base/error.h"

namespace osup {
namespace {

int whole_number(const std::string& value, int lo, int hi, const std::string& what) {
  int v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || v < lo || v > hi)
    fail(what + " must be a whole number " + std::to_string(lo) + "-" + std::to_string(hi) +
         ", not '" + value + "'");
  return v;
}

std::vector<std::string> url_list(const std::string& key, const std::string& value,
                                  const std::string& where) {
  std::vector<std::string> out;
  std::istringstream in(value);
  for (std::string item; std::getline(in, item, ',');) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) fail(where + ": " + key + " has an empty entry");
    item = item.substr(b, e - b + 1);
    if (item.rfind("http://", 0) != 0 && item.rfind("https://", 0) != 0)
      fail(where + ": " + key + " wants http:// or https:// URLs, not '" + item + "'");
    out.push_back(item);
  }
  return out;
}

}  // namespace

bool parse_fleet_key(FleetConfig& c, const std::string& key, const std::string& value,
                     const std::string& where) {
  if (key == "fleet") {
    if (value == "etcd")
      c.backend = FleetConfig::Backend::etcd;
    else if (value == "fleetlock")
      c.backend = FleetConfig::Backend::fleetlock;
    else if (value == "none")
      c.backend = FleetConfig::Backend::none;
    else
      fail(where + ": fleet must be etcd, fleetlock or none, not '" + value + "'");
  } else if (key == "fleet_endpoints") {
    c.endpoints = url_list(key, value, where);
  } else if (key == "fleet_health_endpoints") {
    c.health_endpoints = url_list(key, value, where);
  } else if (key == "fleet_group") {
    if (value.size() > 64 ||
        value.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos)
      fail(where + ": fleet_group must be 1-64 letters, digits, '.', '_' or '-', not '" + value +
           "'");
    c.group = value;
  } else if (key == "fleet_slots") {
    c.slots = whole_number(value, 1, 10000, where + ": fleet_slots");
    c.slots_given = true;
  } else if (key == "fleet_lease_ttl") {
    c.lease_ttl_s = whole_number(value, 10, 86400, where + ": fleet_lease_ttl (seconds)");
  } else if (key == "fleet_slot_wait") {
    c.slot_wait_s = whole_number(value, 0, 604800, where + ": fleet_slot_wait (seconds)");
  } else if (key == "etcd_ca") {
    c.etcd_ca = value;
  } else if (key == "etcd_cert") {
    c.etcd_cert = value;
  } else if (key == "etcd_key") {
    c.etcd_key = value;
  } else {
    return false;
  }
  return true;
}

const std::vector<std::string>& health_store(const FleetConfig& c) {
  return c.backend == FleetConfig::Backend::etcd ? c.endpoints : c.health_endpoints;
}

HttpOptions etcd_http(const FleetConfig& c) {
  HttpOptions tls;
  tls.ca_file = c.etcd_ca;
  tls.client_cert = c.etcd_cert;
  tls.client_key = c.etcd_key;
  return tls;
}

void check_fleet_config(const FleetConfig& c, const std::string& what) {
  using B = FleetConfig::Backend;
  if (c.backend == B::none) {
    for (const auto& [key, set] :
         {std::pair{"fleet_endpoints", !c.endpoints.empty()},
          std::pair{"fleet_health_endpoints", !c.health_endpoints.empty()}})
      if (set)
        fail(what + ": " + key +
             " is set but fleet is not; add 'fleet = etcd' or 'fleet = fleetlock'");
    return;
  }
  const char* name = c.backend == B::etcd ? "etcd" : "fleetlock";
  if (c.endpoints.empty())
    fail(what + ": fleet = " + name + " needs fleet_endpoints = URL" +
         (c.backend == B::etcd ? "[, URL...] (the etcd members)" : " (the FleetLock server)"));
  if (c.backend == B::fleetlock && c.endpoints.size() != 1)
    fail(what + ": fleet = fleetlock takes one URL in fleet_endpoints, not " +
         std::to_string(c.endpoints.size()));
  if (c.etcd_cert.empty() != c.etcd_key.empty())
    fail(what + ": etcd_cert and etcd_key go together; set both or neither");
  if (c.backend == B::etcd && !c.health_endpoints.empty())
    fail(what +
         ": fleet = etcd keeps rollout health on its fleet_endpoints; drop "
         "fleet_health_endpoints (it is for fleet = fleetlock)");
  if (c.backend == B::fleetlock && c.slots_given)
    fail(what +
         ": with fleet = fleetlock the FleetLock server sets the number of reboot slots; drop "
         "fleet_slots");
  if (c.backend == B::fleetlock && c.health_endpoints.empty() &&
      (!c.etcd_cert.empty() || !c.etcd_ca.empty()))
    fail(what +
         ": etcd_ca, etcd_cert and etcd_key are for etcd: fleet = etcd, or "
         "fleet_health_endpoints beside fleet = fleetlock");
}

}  // namespace osup
