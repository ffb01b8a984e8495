// Fleet logic without a server: update.conf keys, the halt threshold, the trial file and
// the wait for a slot (behind the RebootSlots interface, with a scripted fake).
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>

#include "base/error.h"
#include "base/temp_dir.h"
#include "format/channel.h"
#include "updater/fleet/fleet_member.h"
#include "updater/fleet/slot_wait.h"
#include "updater/update_config.h"

using namespace osup;
using namespace osup::fleet;
using Catch::Matchers::Contains;

TEST_CASE("update.conf: fleet keys, and unclear settings refused naming the line", "[unit]") {
  const UpdateConfig c = parse_update_config(
      "fleet = etcd\nfleet_endpoints = http://10.0.0.1:2379, https://e2:2379\n"
      "fleet_group = office-1\nfleet_slots = 10\nfleet_lease_ttl = 600\nfleet_slot_wait = 0\n"
      "etcd_ca = /etc/osup/etcd-ca.pem\netcd_cert = /etc/osup/c.pem\netcd_key = /etc/osup/c.key\n",
      "u.conf");
  CHECK(c.fleet.backend == FleetConfig::Backend::etcd);
  CHECK(c.fleet.endpoints == std::vector<std::string>{"http://10.0.0.1:2379", "https://e2:2379"});
  CHECK(c.fleet.group == "office-1");
  CHECK(c.fleet.slots == 10);
  CHECK(c.fleet.lease_ttl_s == 600);
  CHECK(c.fleet.slot_wait_s == 0);
  CHECK(c.fleet.etcd_key == "/etc/osup/c.key");
  CHECK(parse_update_config("", "x").fleet.backend == FleetConfig::Backend::none);

  CHECK_THROWS_WITH(parse_update_config("fleet = consul\n", "u.conf"),
                    Contains("u.conf line 1: fleet must be etcd, fleetlock or none"));
  CHECK_THROWS_WITH(parse_update_config("fleet = etcd\n", "u.conf"),
                    Contains("u.conf: fleet = etcd needs fleet_endpoints"));
  CHECK_THROWS_WITH(parse_update_config("\nfleet_endpoints = 10.0.0.1:2379\n", "u.conf"),
                    Contains("u.conf line 2: fleet_endpoints wants http:// or https:// URLs"));
  CHECK_THROWS_WITH(parse_update_config("fleet_slots = 0\n", "u.conf"),
                    Contains("u.conf line 1: fleet_slots must be a whole number 1-10000"));
  CHECK_THROWS_WITH(parse_update_config("fleet_lease_ttl = 5s\n", "u.conf"),
                    Contains("fleet_lease_ttl (seconds) must be a whole number"));
  CHECK_THROWS_WITH(parse_update_config("fleet_group = a/b\n", "u.conf"),
                    Contains("fleet_group must be"));
  CHECK_THROWS_WITH(
      parse_update_config("fleet = etcd\nfleet_endpoints = http://e:2379\netcd_cert = /c\n",
                          "u.conf"),
      Contains("etcd_cert and etcd_key go together"));
  CHECK_THROWS_WITH(
      parse_update_config("fleet = fleetlock\nfleet_endpoints = http://a/, http://b/\n", "u.conf"),
      Contains("fleet = fleetlock takes one URL"));
  CHECK_THROWS_WITH(parse_update_config("fleet_endpoints = http://e:2379\n", "u.conf"),
                    Contains("fleet_endpoints is set but fleet is not"));
  CHECK_THROWS_WITH(parse_update_config("fleet_slot = 3\n", "u.conf"),
                    Contains("u.conf line 1: unknown key 'fleet_slot'"));
}

TEST_CASE("update.conf: FleetLock with rollout health on etcd, and what does not go with it",
          "[unit]") {
  const std::string lock = "fleet = fleetlock\nfleet_endpoints = https://airlock:3333\n";
  const UpdateConfig c =
      parse_update_config(lock + "fleet_health_endpoints = https://e1:2379, https://e2:2379\n" +
                              "etcd_ca = /ca.pem\netcd_cert = /c.pem\netcd_key = /c.key\n",
                          "u.conf");
  CHECK(health_store(c.fleet) == std::vector<std::string>{"https://e1:2379", "https://e2:2379"});
  CHECK(health_store(parse_update_config(lock, "u.conf").fleet).empty());
  CHECK(health_store(
            parse_update_config("fleet = etcd\nfleet_endpoints = http://e:1\n", "u").fleet) ==
        std::vector<std::string>{"http://e:1"});

  CHECK_THROWS_WITH(parse_update_config(lock + "fleet_slots = 3\n", "u.conf"),
                    Contains("u.conf: with fleet = fleetlock the FleetLock server sets the number "
                             "of reboot slots; drop fleet_slots"));
  CHECK_THROWS_WITH(parse_update_config(lock + "etcd_ca = /ca.pem\n", "u.conf"),
                    Contains("etcd_ca, etcd_cert and etcd_key are for etcd"));
  CHECK_THROWS_WITH(parse_update_config("fleet = etcd\nfleet_endpoints = http://e:1\n"
                                        "fleet_health_endpoints = http://h:1\n",
                                        "u.conf"),
                    Contains("fleet = etcd keeps rollout health on its fleet_endpoints"));
  CHECK_THROWS_WITH(parse_update_config("fleet_health_endpoints = http://h:1\n", "u.conf"),
                    Contains("fleet_health_endpoints is set but fleet is not"));
  CHECK_THROWS_WITH(parse_update_config(lock + "fleet_health_endpoints = h:1\n", "u.conf"),
                    Contains("line 3: fleet_health_endpoints wants http:// or https:// URLs"));
}

TEST_CASE("halt threshold: a count or a share of the machines that started", "[unit]") {
  ReleaseTally t;
  t.good = 7;
  t.rolled_back = 2;
  CHECK(over_threshold(t, {3, std::nullopt}).empty());
  t.rolled_back = 3;
  CHECK_THAT(over_threshold(t, {3, std::nullopt}),
             Contains("3 of 10 machines that tried it rolled back (the channel halts it after 3"));
  CHECK(over_threshold(t, {std::nullopt, 31}).empty());
  CHECK_THAT(over_threshold(t, {std::nullopt, 30}), Contains("at 30% failures"));
  CHECK(over_threshold(t, {}).empty());  // no threshold: never halts
}

TEST_CASE("channel index: halt fields round-trip, are validated, unknown fields refused",
          "[unit]") {
  ChannelIndex idx;
  idx.channel = "stable";
  idx.serial = 1;
  idx.expires = 100;
  ChannelRelease r;
  r.name = "tiny";
  r.version = "2.0.0";
  r.arch = "x86_64";
  r.compatible = "tiny";
  r.root_hash = std::string(64, 'a');
  r.bundle = {"bundles/t.osup", 10, std::string(64, 'b')};
  r.halt_after_failures = 2;
  r.halt_failure_percent = 5;
  idx.releases.push_back(r);
  const ChannelIndex back = ChannelIndex::parse(idx.to_json());
  CHECK(back == idx);
  idx.releases[0].halt_after_failures.reset();
  CHECK(idx.to_json().find("halt_after_failures") == std::string::npos);  // unset: not written
  CHECK(ChannelIndex::parse(idx.to_json()) == idx);
  idx.releases[0].halt_failure_percent = 101;
  CHECK_THROWS_WITH(idx.to_json(), Contains("releases[0].halt_failure_percent"));
  idx.releases[0].halt_failure_percent = 5;
  std::string text = idx.to_json();
  text.replace(text.find("\"halt_failure_percent\""), 22, "\"halt_failure_percnt\"");
  CHECK_THROWS_WITH(ChannelIndex::parse(text), Contains("halt_failure_percnt"));
}

namespace {

// Scripted answers: "busy", "down" (throws as an unreachable backend does), "held".
class ScriptedSlots final : public RebootSlots {
 public:
  explicit ScriptedSlots(std::deque<std::string> script) : script_(std::move(script)) {}
  SlotAnswer try_acquire(const SlotRequest&) override {
    ++tries;
    const std::string next = script_.empty() ? "busy" : script_.front();
    if (!script_.empty()) script_.pop_front();
    if (next == "down") fail("etcd unreachable (connection refused)");
    if (next == "held") return {true, 0, {}};
    return {false, -1, {"other"}};
  }
  void release(const SlotRequest&) override { ++releases; }
  std::vector<std::string> holders(const std::string&) override { return {}; }
  int tries = 0, releases = 0;

 private:
  std::deque<std::string> script_;
};

}  // namespace

TEST_CASE("slot wait: retries through busy and unreachable, never yes without a slot", "[unit]") {
  std::vector<std::string> lines;
  const Log log = [&](const std::string& l) { lines.push_back(l); };
  ScriptedSlots s({"down", "down", "busy", "held"});
  const WaitOutcome w = wait_for_slot(s, {"g", "m1", 2}, {0.01, 0.02, 10}, log);
  CHECK(w.answer.held);
  CHECK(w.tries == 4);
  REQUIRE(lines.size() >= 2);
  CHECK_THAT(lines[0], Contains("etcd unreachable") && Contains("retrying"));
  // Waiting is said once, naming who holds the slots.
  CHECK(lines == std::vector<std::string>{lines[0], "reboot slots reachable again",
                                          "all 2 reboot slots of group g are taken (by other); "
                                          "waiting for one"});

  ScriptedSlots never({"down"});
  const auto t0 = std::chrono::steady_clock::now();
  const WaitOutcome gave_up = wait_for_slot(never, {"g", "m1", 2}, {0.01, 0.05, 0.3}, {});
  CHECK_FALSE(gave_up.answer.held);
  CHECK(gave_up.tries > 3);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(300));

  FleetMember m(never, nullptr, {"g", "m1", 2}, {0.01, 0.05, 0.2});
  CHECK_THAT(m.begin("2.0.0"), Contains("no reboot slot of group g came free"));
}

TEST_CASE("slot wait: the waiting line names the holders, or the server's reason", "[unit]") {
  CHECK(busy_line({"office", "m1", 2}, {false, -1, {"m-17", "m-42"}, ""}) ==
        "all 2 reboot slots of group office are taken (by m-17, m-42); waiting for one");
  CHECK(busy_line({"workers", "m1", 1}, {false, -1, {}, "failed_lock: semaphore full"}) ==
        "no reboot slot of group workers is free now (the server says failed_lock: semaphore "
        "full); waiting for one");
}

TEST_CASE("no rollout health (FleetLock alone): a release with a halt threshold is refused",
          "[unit]") {
  ScriptedSlots s({"held"});
  FleetMember m(s, nullptr, {"g", "m1", 1}, {0.01, 0.02, 1});
  CHECK(m.check("2.0.0", {}).empty());
  CHECK(m.check("2.0.0", {3, 5}) ==
        "not starting 2.0.0: the channel halts its rollout after 3 failures or at 5% failures, "
        "but this machine keeps no rollout health (FleetLock has no place for it); set "
        "fleet_health_endpoints to the etcd that keeps it (docs/fleet.md)");
  CHECK_THAT(m.check("2.0.0", {std::nullopt, 5}), Contains("halts its rollout at 5% failures,"));
  CHECK(s.tries == 0);  // refused before asking for a slot
}

TEST_CASE("fleet trial file: saved across the reboot, damaged one named", "[unit]") {
  TempDir d;
  CHECK_FALSE(load_trial(d.path()));
  save_trial(d.path(), {"2.0.0", "office", {3, std::nullopt}});
  const auto t = load_trial(d.path());
  REQUIRE(t);
  CHECK(t->version == "2.0.0");
  CHECK(t->threshold.halt_after_failures == 3);
  CHECK_FALSE(t->threshold.halt_failure_percent);
  CHECK_FALSE(t->installed);
  clear_trial(d.path());
  CHECK_FALSE(load_trial(d.path()));
}
