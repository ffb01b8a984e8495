// Fault cases on real etcd: all of etcd down, one member of three killed mid-rollout, and
// a machine judging its boot while etcd is away.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "tests/support/etcd_server.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/fleet_member.h"
#include "updater/fleet/fleet_update.h"
#include "updater/fleet/tests/fleet_sim.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

TEST_CASE("etcd all down: a machine waits and retries, never goes on without a slot",
          "[integration]") {
  test::EtcdCluster etcd(1);
  EtcdClient c({etcd.endpoints(), {}});
  EtcdRebootSlots slots(c, 60);
  RolloutHealth health(c, "g");
  std::vector<std::string> log;
  FleetMember m(slots, &health, {"g", "m1", 1}, {0.1, 0.3, 1.5},
                [&](const std::string& l) { log.push_back(l); });
  etcd.kill(0);
  CHECK(m.check("2.0.0", {1, std::nullopt}).empty());  // unknown health does not stop it here
  const std::string why = m.begin("2.0.0");
  CHECK_THAT(why, Contains("no reboot slot of group g came free") && Contains("etcd unreachable"));
  CHECK(m.last_wait().tries >= 4);
  CHECK_FALSE(m.last_wait().answer.held);

  // etcd comes back while the machine waits: it gets its slot then.
  FleetMember patient(slots, &health, {"g", "m1", 1}, {0.1, 0.3, 30});
  std::thread back([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    etcd.restart(0);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const std::string ok = patient.begin("2.0.0");
  back.join();
  CHECK(ok.empty());
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(1500));
  CHECK(slots.holders("g") == std::vector<std::string>{"m1"});
  CHECK(health.tally("2.0.0").trying == 1);
}

TEST_CASE("etcd down at boot: mark-good's fleet step warns and never blocks", "[integration]") {
  test::EtcdCluster etcd(1);
  test::TempDir state;
  FleetConfig conf;
  conf.backend = FleetConfig::Backend::etcd;
  conf.endpoints = etcd.endpoints();
  conf.group = "g";
  save_trial(state.path(), {"2.0.0", "g", {}, true});
  etcd.kill(0);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string warn =
      after_boot_judged(true, conf, state.path(), "m1", [] { return "2.0.0"; });
  CHECK_THAT(warn, Contains("its lease frees the slot"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  CHECK(load_trial(state.path()));  // kept: the next mark-good tries again

  etcd.restart(0);
  EtcdClient c({etcd.endpoints(), {}});
  EtcdRebootSlots slots(c, 60);
  REQUIRE(slots.try_acquire({"g", "m1", 1}).held);
  // Good on another version than the one tried: the loader went back by itself.
  CHECK(after_boot_judged(true, conf, state.path(), "m1", [] { return "1.0.0"; }).empty());
  CHECK_FALSE(load_trial(state.path()));
  CHECK(slots.holders("g").empty());
  CHECK(RolloutHealth(c, "g").tally("2.0.0").rolled_back == 1);

  // A trial whose install never finished is no failure: the slot is given back only.
  REQUIRE(slots.try_acquire({"g", "m1", 1}).held);
  save_trial(state.path(), {"2.0.1", "g", {}, false});
  CHECK(after_boot_judged(true, conf, state.path(), "m1", [] { return "1.0.0"; }).empty());
  CHECK(slots.holders("g").empty());
  CHECK(RolloutHealth(c, "g").tally("2.0.1").rolled_back == 0);
}

TEST_CASE("one etcd member of three killed mid-rollout: the fleet goes on", "[integration]") {
  test::EtcdCluster etcd(3);
  sim::SimOptions o;
  o.endpoints = etcd.endpoints();
  o.machines = 40;
  o.slots = 3;
  o.boot_s = 0.1;
  o.wait = {0.1, 0.5, 120};
  o.on_finish = [&](int finished) {
    if (finished == 10) etcd.kill(0);  // the member every client asks first
  };
  const sim::SimResult r = sim::run_fleet(o);
  CHECK(r.errors.empty());
  CHECK(r.good == 40);
  EtcdClient c({etcd.endpoints(), {}});
  const sim::History h = sim::check_history(c, o.group, "2.0.0");
  CHECK(h.max_held <= 3);
  CHECK(h.max_trying <= 3);
  CHECK(h.trying_puts == 40);
  std::printf("3-member etcd, member 0 killed after 10 of 40: %.1f s, longest wait %.1f s\n",
              r.total_s, r.longest_wait_s);
}
