// The FleetLock client against a small protocol server of the tests' own.
#include "updater/fleet/fleetlock.h"

#include <catch2/catch.hpp>

#include "base/error.h"
#include "tests/support/etcd_server.h"
#include "tests/support/fleetlock_server.h"
#include "tests/support/nginx_server.h"
#include "updater/fleet/fleet_member.h"
#include "updater/fleet/fleet_status.h"
#include "updater/fleet/fleet_update.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

TEST_CASE("FleetLock: pre-reboot takes a slot, steady-state gives it back", "[integration]") {
  test::FleetLockServer server(1);
  FleetLockSlots slots(server.url() + "/", {});
  const SlotRequest a{"workers", "node-a", 1}, b{"workers", "node-b", 1};
  CHECK(slots.try_acquire(a).held);
  CHECK(slots.try_acquire(a).held);  // the server treats a holder's retry as a success
  const SlotAnswer no = slots.try_acquire(b);
  CHECK_FALSE(no.held);
  CHECK_THAT(slots.last_refusal(), Contains("failed_lock"));
  CHECK(no.refusal == slots.last_refusal());
  CHECK(server.holders("workers") == std::set<std::string>{"node-a"});
  slots.release(a);
  CHECK(slots.try_acquire(b).held);
  CHECK(server.bad_requests() == 0);  // header and body were what the protocol wants

  // The wait goes through FleetMember without health records (FleetLock has none).
  FleetMember m(slots, nullptr, {"workers", "node-c", 1}, {0.05, 0.1, 0.5});
  CHECK_THAT(m.begin("2.0.0"), Contains("no reboot slot of group workers came free"));
  slots.release(b);
  CHECK(m.begin("2.0.0").empty());
  m.end_good("2.0.0");
  CHECK(server.holders("workers").empty());
}

TEST_CASE("FleetLock: an unreachable or broken server is one line", "[integration]") {
  FleetLockSlots none("http://127.0.0.1:" + std::to_string(test::closed_port()), {});
  CHECK_THROWS_WITH(none.try_acquire({"g", "n", 1}), Contains("FleetLock server: connecting to"));
  test::TempDir root;
  test::NginxServer broken(root.path(), {false, true, {{"/v1/", "return 500;"}}});
  FleetLockSlots five(broken.url(""), {});
  CHECK_THROWS_WITH(five.try_acquire({"g", "n", 1}), Contains("HTTP 500"));
}

TEST_CASE("FleetLock with rollout health on etcd: slots from the server, records and halts in etcd",
          "[integration]") {
  test::FleetLockServer server(1);
  test::EtcdCluster etcd(1);
  FleetConfig c;
  c.backend = FleetConfig::Backend::fleetlock;
  c.endpoints = {server.url()};
  c.health_endpoints = etcd.endpoints();
  c.group = "workers";
  const auto a = join_fleet(c, "node-a", {});
  REQUIRE(a->health);
  const HealthThreshold halt_after_1{1, std::nullopt};
  CHECK(a->member->check("2.0.0", halt_after_1).empty());
  CHECK(a->member->begin("2.0.0").empty());
  CHECK(server.holders("workers") == std::set<std::string>{"node-a"});
  CHECK(a->health->tally("2.0.0").trying == 1);
  a->member->end_rolled_back("2.0.0", halt_after_1);
  CHECK(server.holders("workers").empty());

  // The one failure halts the release for the next machine, before it asks for a slot.
  const auto b = join_fleet(c, "node-b", {});
  CHECK_THAT(b->member->check("2.0.0", halt_after_1),
             Contains("not starting 2.0.0: its rollout in group workers is halted: 1 of 1"));

  // fleet status reads the records; the slots are the server's to show.
  const nlohmann::json j = fleet_status_json(c);
  CHECK(j["holders"].is_null());
  CHECK(j["releases"]["2.0.0"]["rolled_back"] == 1);
  CHECK(j["releases"]["2.0.0"]["halted"] == true);
}
