// Reboot slots and rollout health on a real etcd.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "base/error.h"
#include "tests/support/etcd_server.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/fleet_member.h"
#include "updater/fleet/fleet_status.h"
#include "updater/fleet/rollout_health.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

TEST_CASE("etcd reboot slots: N holders, the next waits, re-entrant, release", "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  EtcdRebootSlots slots(c, 60);
  const SlotRequest a{"g", "a", 2}, b{"g", "b", 2}, x{"g", "x", 2};
  CHECK(slots.try_acquire(a).held);
  CHECK(slots.try_acquire(b).held);
  const SlotAnswer busy = slots.try_acquire(x);
  CHECK_FALSE(busy.held);
  CHECK(busy.holders.size() == 2);
  const SlotAnswer again = slots.try_acquire(a);  // a rerun after a crash keeps its slot
  CHECK(again.held);
  CHECK(slots.holders("g").size() == 2);
  CHECK(slots.try_acquire({"other-group", "x", 2}).held);  // groups do not share slots

  slots.release(x);  // holds none in g: nothing happens
  CHECK(slots.holders("g").size() == 2);
  slots.release(a);
  CHECK(slots.holders("g") == std::vector<std::string>{"b"});
  CHECK(slots.try_acquire(x).held);
  CHECK_FALSE(slots.try_acquire(a).held);
}

TEST_CASE("etcd reboot slots: a killed holder's slot frees when its lease ends", "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  {
    // The holder takes a slot with a 2 s lease, then dies: no keepalive, no release.
    EtcdClient dead_client({etcd.endpoints(), {}});
    EtcdRebootSlots dead(dead_client, 2);
    REQUIRE(dead.try_acquire({"g", "dead", 1}).held);
  }
  EtcdRebootSlots slots(c, 60);
  const SlotRequest me{"g", "me", 1};
  CHECK_FALSE(slots.try_acquire(me).held);
  const auto t0 = std::chrono::steady_clock::now();
  const WaitOutcome w = wait_for_slot(slots, me, {0.1, 0.5, 15});
  CHECK(w.answer.held);
  CHECK(w.waited_s < 10);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(500));
  CHECK(slots.holders("g") == std::vector<std::string>{"me"});

  // A holder that keeps its lease alive keeps its slot past the TTL.
  EtcdRebootSlots alive(c, 2);
  REQUIRE(alive.try_acquire({"h", "alive", 1}).held);
  for (int i = 0; i < 6; ++i) {
    alive.keep_alive({"h", "alive", 1});
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  CHECK_FALSE(slots.try_acquire({"h", "late", 1}).held);
}

TEST_CASE("rollout health: failures past the threshold halt the release, with a reason",
          "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  RolloutHealth health(c, "g");
  const HealthThreshold three{3, std::nullopt};
  for (const char* m : {"m1", "m2", "m3", "m4", "m5"}) REQUIRE(health.start("2.0.0", m));
  health.record("2.0.0", "m1", MachineState::good);
  health.record_failure("2.0.0", "m2", three);
  health.record_failure("2.0.0", "m3", three);
  CHECK(health.refusal("2.0.0", three).empty());
  CHECK(health.start("2.0.0", "m6"));
  health.record_failure("2.0.0", "m4", three);
  const std::string why = health.refusal("2.0.0", three);
  CHECK_THAT(why,
             Contains("not starting 2.0.0: its rollout in group g is halted: 3 of 6 machines"));
  CHECK(why.find('\n') == std::string::npos);
  CHECK_FALSE(health.start("2.0.0", "m7"));       // the halt is enforced in the transaction
  CHECK(health.refusal("2.0.1", three).empty());  // another release is not affected
  // A halt stays even when the threshold read later is looser.
  CHECK_THAT(health.refusal("2.0.0", {}), Contains("halted"));

  const ReleaseTally t = health.tally("2.0.0");
  CHECK(t.good == 1);
  CHECK(t.rolled_back == 3);
  CHECK(t.trying == 2);
  CHECK(t.halted);

  // A machine that waited for a slot while the release was halted gives it back.
  EtcdRebootSlots slots(c, 60);
  FleetMember late(slots, &health, {"g", "m8", 2}, {0.1, 0.2, 5});
  CHECK_THAT(late.begin("2.0.0"), Contains("was halted while this machine waited"));
  CHECK(slots.holders("g").empty());
}

TEST_CASE("osup fleet status: per release counts and slot holders", "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  EtcdRebootSlots slots(c, 60);
  RolloutHealth health(c, "office");
  FleetMember a(slots, &health, {"office", "a", 2}, {0.1, 0.2, 5});
  FleetMember b(slots, &health, {"office", "b", 2}, {0.1, 0.2, 5});
  REQUIRE(a.begin("2.0.0").empty());
  REQUIRE(b.begin("2.0.0").empty());
  b.end_good("2.0.0");
  health.record("2.0.0", "c", MachineState::waiting);
  FleetConfig conf;
  conf.backend = FleetConfig::Backend::etcd;
  conf.endpoints = etcd.endpoints();
  conf.group = "office";
  conf.slots = 2;
  const nlohmann::json j = fleet_status_json(conf);
  CHECK(j["holders"] == nlohmann::json::array({"a"}));
  const auto& r = j["releases"]["2.0.0"];
  CHECK(r["machines"] == 3);
  CHECK(r["trying"] == 1);
  CHECK(r["good"] == 1);
  CHECK(r["waiting"] == 1);
  CHECK(r["rolled_back"] == 0);
  conf.backend = FleetConfig::Backend::fleetlock;
  CHECK_THROWS_WITH(fleet_status_json(conf), Contains("osup fleet status reads etcd"));
}
