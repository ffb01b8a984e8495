// The fleet simulation (CTest label `fleet`): a thousand machines as threads running
// osup's coordination code against a real etcd, the release picked from a channel index
// served by nginx; what happened is checked from etcd's revision history.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "format/channel.h"
#include "tests/support/etcd_server.h"
#include "tests/support/nginx_server.h"
#include "updater/fleet/tests/fleet_sim.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

namespace {

// A channel with release 2.0.0 of image "sim" for every machine (the index unsigned: the
// signature is not what this measures).
void write_channel(const std::string& dir, std::optional<int> halt_after_failures) {
  ChannelIndex idx;
  idx.channel = "stable";
  idx.serial = 1;
  idx.expires = 4102444800;
  ChannelRelease r;
  r.name = "sim";
  r.version = "2.0.0";
  r.arch = "x86_64";
  r.compatible = "sim";
  r.root_hash = std::string(64, 'a');
  r.bundle = {"bundles/sim-2.0.0.osup", 1, std::string(64, 'b')};
  r.halt_after_failures = halt_after_failures;
  idx.releases.push_back(r);
  std::ofstream(dir + "/index.json") << idx.to_json();
}

// What both runs share: one etcd member, the channel served by nginx, options aimed at them.
struct SimFleet {
  test::EtcdCluster etcd{1};
  test::TempDir channel;
  std::optional<test::NginxServer> nginx;
  sim::SimOptions o;

  SimFleet(int machines, std::optional<int> halt_after_failures) {
    write_channel(channel.path(), halt_after_failures);
    nginx.emplace(channel.path());
    o.endpoints = etcd.endpoints();
    o.channel_url = nginx->url("/");
    o.machines = machines;
    o.slots = 10;
  }
  // etcd's revision history of the run.
  sim::History history() {
    fleet::EtcdClient c({etcd.endpoints(), {}});
    return sim::check_history(c, o.group, "2.0.0");
  }
};

}  // namespace

TEST_CASE("fleet simulation: 1000 machines, 10 reboot slots, never more than 10 at once",
          "[fleet]") {
  SimFleet f(1000, 3);
  sim::SimOptions& o = f.o;
  o.boot_s = 0.2;
  o.start_spread_s = 2;
  o.wait = {0.2, 5, 600};  // 990 waiters polling every few seconds find a freed slot at once
  const sim::SimResult r = sim::run_fleet(o);
  for (size_t i = 0; i < std::min<size_t>(r.errors.size(), 5); ++i) UNSCOPED_INFO(r.errors[i]);
  CHECK(r.errors.empty());
  CHECK(r.good == 1000);
  const sim::History h = f.history();
  CHECK(h.max_held <= 10);
  CHECK(h.max_trying <= 10);
  CHECK(h.max_trying >= 5);  // the slots were used, not one machine at a time
  CHECK(h.trying_puts == 1000);
  std::printf(
      "fleet simulation: %d machines, %d slots: all done in %.1f s; longest wait for a slot "
      "%.1f s; at most %d slots held and %d machines rebooting at once (from %zu etcd "
      "history events); %llu etcd requests, %.0f/s\n",
      o.machines, o.slots, r.total_s, r.longest_wait_s, h.max_held, h.max_trying, h.events,
      static_cast<unsigned long long>(r.requests), static_cast<double>(r.requests) / r.total_s);
}

TEST_CASE("fleet simulation: a bad release (3 of the first 10 fail) halts its rollout", "[fleet]") {
  SimFleet f(200, 3);
  sim::SimOptions& o = f.o;
  o.boot_s = 1.0;
  o.fail_s = 0.05;
  o.fail_starts = {1, 4, 7};
  const sim::SimResult r = sim::run_fleet(o);
  CHECK(r.errors.empty());
  CHECK(r.rolled_back == 3);
  const sim::History h = f.history();
  REQUIRE(h.halt_revision > 0);
  CHECK(h.last_trying_revision < h.halt_revision);  // nobody started it after the halt
  // Slots freed by the first two failures may go to others before the third one lands.
  CHECK(h.trying_puts <= o.slots + 2);
  CHECK(r.good == h.trying_puts - 3);
  CHECK(r.refused == o.machines - h.trying_puts);  // the rest stay on the old version
  for (const std::string& why : r.refusals) CHECK_THAT(why, Contains("halted"));
  std::printf("bad release: %d of %d machines started it, %d rolled back, %d refused (%s)\n",
              h.trying_puts, o.machines, r.rolled_back, r.refused,
              r.refusals.empty() ? "" : r.refusals.front().c_str());
}
