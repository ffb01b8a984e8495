// `osup update` in a fleet, end to end: a channel made by the real `osup-build publish`,
// served by nginx, taken by the real osup working offline on a disk image, with its
// reboot slot and rollout health on a real etcd.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/etcd_server.h"
#include "tests/support/fleetlock_server.h"
#include "tests/support/nginx_server.h"
#include "tests/support/test_support.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/fleet_member.h"
#include "updater/fleet/rollout_health.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

namespace {

constexpr const char* kMachine = "0123456789abcdef0123456789abcdef";

struct FleetChannel {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  test::TestImage v2 =
      test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key, "tiny", {"--no-disk"}, "v2");
  std::string www = dir / "www", conf = dir / "update.conf", state = dir / "state";

  FleetChannel() {
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    for (const std::string& b : {v1.bundle, v2.bundle}) {
      RunResult r = run({test::osup_build_exe(), "publish", b, "--channel", www, "--key",
                         key.private_key, "--halt-after-failures", "2"});
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    }
  }
  RunResult update(const std::string& url) const {
    return test::run_offline_osup(
        v1.disk, key, "a",
        {"update", "--channel", url, "--config", conf, "--state-dir", state, "--cache-dir",
         dir / "cache", "--machine-id", kMachine, "--retries", "0", "--json"});
  }
};

}  // namespace

TEST_CASE("osup update in a fleet: a reboot slot before the new slot is written", "[integration]") {
  FleetChannel ch;
  test::NginxServer nginx(ch.www);
  test::EtcdCluster etcd(1);
  std::ofstream(ch.conf) << "fleet = etcd\nfleet_endpoints = " << etcd.endpoint(0)
                         << "\nfleet_group = lab\nfleet_slots = 1\nfleet_slot_wait = 2\n";
  EtcdClient c({etcd.endpoints(), {}});
  EtcdRebootSlots slots(c, 60);
  RolloutHealth health(c, "lab");

  // The only slot is someone else's: the update waits, gives up, installs nothing.
  REQUIRE(slots.try_acquire({"lab", "other", 1}).held);
  RunResult r = ch.update(nginx.url("/"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["installed"] == false);
  CHECK_THAT(j["refused"].get<std::string>(), Contains("no reboot slot of group lab came free"));
  CHECK_FALSE(load_trial(ch.state));
  CHECK(health.tally("2.0.0").waiting == 1);

  // Once it is free, the update takes it, records trying, and installs.
  slots.release({"lab", "other", 1});
  r = ch.update(nginx.url("/"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  j = nlohmann::json::parse(r.out);
  CHECK(j["installed"] == true);
  CHECK(slots.holders("lab") == std::vector<std::string>{kMachine});
  CHECK(health.tally("2.0.0").trying == 1);
  const auto trial = load_trial(ch.state);
  REQUIRE(trial);
  CHECK(trial->version == "2.0.0");
  CHECK(trial->threshold.halt_after_failures == 2);  // from the channel
  CHECK(trial->installed);

  // What `osup fleet status` shows for it, in words and in JSON.
  RunResult st = run({test::osup_exe(), "fleet", "status", "--config", ch.conf});
  INFO(st.err);
  REQUIRE(st.exit_code == 0);
  CHECK_THAT(st.out, Contains("group lab: 1 of 1 reboot slots held (" + std::string(kMachine)) &&
                         Contains("2.0.0") && Contains("1 trying"));
  st = run({test::osup_exe(), "fleet", "status", "--json", "--config", ch.conf});
  REQUIRE(st.exit_code == 0);
  CHECK(nlohmann::json::parse(st.out)["releases"]["2.0.0"]["trying"] == 1);
  st = run({test::osup_exe(), "fleet", "stats"});
  CHECK(st.exit_code != 0);
  CHECK_THAT(st.err, Contains("osup fleet wants a subcommand: osup fleet status"));
}

TEST_CASE("osup update in a fleet: a halted release is not downloaded, and says why",
          "[integration]") {
  FleetChannel ch;
  test::NginxServer nginx(ch.www);
  test::EtcdCluster etcd(1);
  std::ofstream(ch.conf) << "fleet = etcd\nfleet_endpoints = " << etcd.endpoint(0)
                         << "\nfleet_group = lab\nfleet_slots = 5\n";
  EtcdClient c({etcd.endpoints(), {}});
  RolloutHealth health(c, "lab");
  for (const char* m : {"x", "y"}) {
    REQUIRE(health.start("2.0.0", m));
    health.record_failure("2.0.0", m, {2, std::nullopt});
  }
  const RunResult r = ch.update(nginx.url("/"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["installed"] == false);
  CHECK_THAT(j["refused"].get<std::string>(),
             Contains("not starting 2.0.0: its rollout in group lab is halted: 2 of 2 machines"));
  CHECK(nginx.access_log("/bundles/tiny-2.0.0-x86_64.osup").empty());
  CHECK(EtcdRebootSlots(c, 60).holders("lab").empty());

  // FleetLock alone keeps no rollout health: a release that asks to halt is not started.
  test::FleetLockServer lock(1);
  std::ofstream(ch.conf) << "fleet = fleetlock\nfleet_endpoints = " << lock.url() << "\n";
  const RunResult blind = ch.update(nginx.url("/"));
  INFO(blind.err);
  REQUIRE(blind.exit_code == 0);
  CHECK_THAT(nlohmann::json::parse(blind.out)["refused"].get<std::string>(),
             Contains("not starting 2.0.0: the channel halts its rollout after 2 failures, but "
                      "this machine keeps no rollout health"));
  CHECK(nginx.access_log("/bundles/tiny-2.0.0-x86_64.osup").empty());
  CHECK(lock.holders("default").empty());

  std::ofstream(ch.conf) << "fleet = etcd\n";
  const RunResult bad = ch.update(nginx.url("/"));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Contains("update.conf: fleet = etcd needs fleet_endpoints"));
}
