#include "updater/machine/plan.h"

#include <catch2/catch.hpp>

#include "base/error.h"
#include "base/temp_dir.h"
#include "updater/machine/apply.h"
#include "updater/machine/tests/fake_backend.h"

using namespace osup::machine;
using Catch::Matchers::Contains;
using osup::machine::test::FakeBackend;

namespace {

MachineConfig two_containers() {
  return parse_machine_config(R"({"format": 1, "containers": {
    "web": { "image": "localhost/web:1",
             "mounts": [ { "host": "/srv/www", "container": "/www", "read_only": true } ] },
    "client": { "image": "localhost/web:1", "command": ["sleep", "1000"] } } })",
                              "m.json");
}

std::vector<std::string> actions(const Plan& p) {
  std::vector<std::string> out;
  for (const Step& s : p.steps)
    out.push_back(to_string(s.action) + " " + to_string(s.resource.kind) + " " + s.resource.name);
  return out;
}

// Plans CONFIG against the fake and applies it, as `osup apply` does.
Plan apply(const MachineConfig& config, FakeBackend& fake, const std::string& state) {
  MachineState recorded = read_machine_state(state);
  Plan plan = plan_machine(config, recorded, {&fake});
  apply_plan(plan, config, {&fake}, state, recorded);
  return plan;
}

}  // namespace

TEST_CASE("plan: a fresh machine adds the network first, then the containers", "[unit]") {
  const Plan p = make_plan(desired_resources(two_containers()), {}, {});
  CHECK(actions(p) ==
        std::vector<std::string>{"add network osup", "add container client", "add container web"});
  CHECK(p.changes() == 3);
  CHECK(plan_json(p)["steps"][0]["action"] == "add");
  CHECK_THAT(plan_text(p), Contains("+ container web (new)") && Contains("3 change(s)"));
}

TEST_CASE("plan: apply, then the same file again is nothing to do", "[unit]") {
  osup::TempDir dir;
  const std::string state = dir.path() + "/machine-state.json";
  FakeBackend fake({Kind::network, Kind::container});
  CHECK(apply(two_containers(), fake, state).changes() == 3);
  CHECK(fake.calls.size() == 3);
  CHECK(read_machine_state(state).installed.at("container").size() == 2);
  const Plan again = apply(two_containers(), fake, state);
  CHECK(again.nothing_to_do());
  CHECK(fake.calls.size() == 3);
  CHECK(plan_text(again) == "nothing to do: all 3 resources are as the file says\n");
}

TEST_CASE("plan: a changed mount list recreates only that container", "[unit]") {
  osup::TempDir dir;
  const std::string state = dir.path() + "/machine-state.json";
  FakeBackend fake({Kind::network, Kind::container});
  (void)apply(two_containers(), fake, state);
  MachineConfig changed = two_containers();
  changed.containers.at("web").mounts.push_back({"/srv/logs", "/logs", false});
  const Plan p = apply(changed, fake, state);
  CHECK(actions(p) == std::vector<std::string>{"unchanged network osup",
                                               "unchanged container client",
                                               "update container web"});
  CHECK(fake.calls.back() == "update container web");
  CHECK(read_machine_state(state).installed.at("container").at("web") ==
        container_fingerprint(changed.containers.at("web")));
  // Read-only to writable is a change too; the order of env entries is not.
  MachineConfig rw = changed;
  rw.containers.at("web").mounts[0].read_only = false;
  CHECK(container_fingerprint(rw.containers.at("web")) !=
        container_fingerprint(changed.containers.at("web")));
}

TEST_CASE("plan: removal touches only what osup installed", "[unit]") {
  osup::TempDir dir;
  const std::string state = dir.path() + "/machine-state.json";
  FakeBackend fake({Kind::network, Kind::container});
  (void)apply(two_containers(), fake, state);
  fake.have[Kind::container]["handmade"] = "";  // the user's own container
  MachineConfig fewer = two_containers();
  fewer.containers.erase("client");
  CHECK(actions(apply(fewer, fake, state)) == std::vector<std::string>{"unchanged network osup",
                                                                       "unchanged container web",
                                                                       "remove container client"});
  CHECK(fake.have[Kind::container].count("handmade") == 1);
  // Nothing left: containers go before their network.
  const Plan none = apply(parse_machine_config(R"({"format": 1})", "m.json"), fake, state);
  CHECK(actions(none) == std::vector<std::string>{"remove container web", "remove network osup"});
  CHECK(fake.have[Kind::container] == std::map<std::string, std::string>{{"handmade", ""}});
  CHECK(read_machine_state(state).installed.empty());
}

TEST_CASE("plan: a name the user already uses is refused before any change", "[unit]") {
  FakeBackend fake({Kind::network, Kind::container});
  fake.have[Kind::container]["web"] = "";
  CHECK_THROWS_WITH(plan_machine(two_containers(), {}, {&fake}),
                    Contains("container 'web' exists but osup did not create it"));
  CHECK(fake.calls.empty());
}

TEST_CASE("plan: an interrupted apply is finished by the next one", "[unit]") {
  osup::TempDir dir;
  const std::string state = dir.path() + "/machine-state.json";
  FakeBackend fake({Kind::network, Kind::container});
  fake.fail_on = "create container web";
  CHECK_THROWS_WITH(apply(two_containers(), fake, state),
                    Contains("add container 'web': fake failure"));
  // web was claimed before its create: recorded with no fingerprint, so it is osup's.
  CHECK(read_machine_state(state).installed.at("container").at("web").empty());
  fake.fail_on.clear();
  CHECK(actions(apply(two_containers(), fake, state)) ==
        std::vector<std::string>{"unchanged network osup", "unchanged container client",
                                 "add container web"});
  // Recorded, then removed behind osup's back: created again.
  fake.have[Kind::container].erase("client");
  const Plan p = apply(two_containers(), fake, state);
  CHECK(p.steps[1].note == "recorded but missing: created again");
}

TEST_CASE("plan: kinds without a backend are refused before any change", "[unit]") {
  const MachineConfig c = parse_machine_config(R"({"format": 1, "apps": {
    "remotes": { "local": { "url": "file:///srv/repo", "gpg_verify": false } } } })",
                                               "m.json");
  FakeBackend fake({Kind::network, Kind::container});
  CHECK_THROWS_WITH(plan_machine(c, {}, {&fake}),
                    Contains("nothing here installs Flatpak apps (apps section)"));
  // A file without containers never asks the container backend.
  FakeBackend none({});
  CHECK(plan_machine(parse_machine_config(R"({"format": 1})", "m.json"), {}, {&none})
            .nothing_to_do());
}
