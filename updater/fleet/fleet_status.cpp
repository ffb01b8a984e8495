#include "updater/fleet/fleet_status.h"

#include <cstdio>

#include "base/cli_args.h"
#include "base/error.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/rollout_health.h"
#include "updater/update_config.h"

using nlohmann::json;

namespace osup::fleet {

json fleet_status_json(const FleetConfig& c) {
  if (health_store(c).empty())
    fail(
        "osup fleet status reads etcd: set 'fleet = etcd' and fleet_endpoints in update.conf, or "
        "fleet_health_endpoints beside 'fleet = fleetlock'");
  EtcdClient etcd({health_store(c), etcd_http(c)});
  RolloutHealth health(etcd, c.group);
  json releases = json::object();
  for (const auto& [version, t] : health.all())
    releases[version] = {{"machines", t.waiting + t.started()},
                         {"waiting", t.waiting},
                         {"trying", t.trying},
                         {"good", t.good},
                         {"rolled_back", t.rolled_back},
                         {"halted", t.halted}};
  // A FleetLock server keeps its slots to itself: null, not an empty list.
  const bool own_slots = c.backend == FleetConfig::Backend::etcd;
  return {{"group", c.group},
          {"slots", own_slots ? json(c.slots) : json(nullptr)},
          {"holders",
           own_slots ? json(EtcdRebootSlots(etcd, c.lease_ttl_s).holders(c.group)) : json(nullptr)},
          {"releases", releases}};
}

void print_fleet_status(const json& j) {
  if (j["holders"].is_null()) {
    std::printf("group %s: reboot slots kept by the FleetLock server\n",
                j["group"].get<std::string>().c_str());
  } else {
    const auto holders = j["holders"].get<std::vector<std::string>>();
    std::printf("group %s: %zu of %d reboot slots held", j["group"].get<std::string>().c_str(),
                holders.size(), j["slots"].get<int>());
    for (size_t i = 0; i < holders.size(); ++i)
      std::printf("%s%s", i ? ", " : " (", holders[i].c_str());
    std::printf("%s\n", holders.empty() ? "" : ")");
  }
  if (j["releases"].empty()) std::printf("no release records yet\n");
  for (const auto& [v, r] : j["releases"].items())
    std::printf(
        "  %-16s %d machines: %d waiting for a slot, %d trying, %d good, %d rolled back%s\n",
        v.c_str(), r["machines"].get<int>(), r["waiting"].get<int>(), r["trying"].get<int>(),
        r["good"].get<int>(), r["rolled_back"].get<int>(),
        r["halted"].get<bool>() ? " [halted]" : "");
}

int cmd_fleet(const std::vector<std::string>& args, const std::string& default_config) {
  if (args.empty() || args[0] != "status")
    fail("osup fleet wants a subcommand: osup fleet status [--json] [--config FILE]");
  CliArgs a("osup fleet status", {args.begin() + 1, args.end()}, {"config"}, {"json"});
  a.expect_positionals(0, 0, "osup fleet status [--json] [--config FILE]");
  const UpdateConfig conf = read_update_config(a.value_or("config", default_config));
  const json j = fleet_status_json(conf.fleet);
  if (a.flag("json"))
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_fleet_status(j);
  return 0;
}

}  // namespace osup::fleet
