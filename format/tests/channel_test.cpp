#include "format/channel.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"

using namespace osup;
using Catch::Matchers::Contains;

namespace {

ChannelRelease release(const std::string& version, int rollout = 100) {
  ChannelRelease r;
  r.name = "minimal";
  r.version = version;
  r.arch = "x86_64";
  r.compatible = "minimal-x86_64";
  r.created = 1700000000;
  r.root_hash = std::string(64, 'a');
  r.rollout_percent = rollout;
  r.bundle = {"bundles/minimal-" + version + "-x86_64.osup", 1000, std::string(64, 'b')};
  return r;
}

ChannelIndex index_with(std::vector<ChannelRelease> rs) {
  ChannelIndex idx;
  idx.channel = "stable";
  idx.serial = 7;
  idx.expires = 1800000000;
  idx.releases = std::move(rs);
  return idx;
}

}  // namespace

TEST_CASE("channel index round-trips and is strict", "[unit]") {
  ChannelRelease r = release("2.0.0");
  r.deltas.push_back({"1.0.0", std::string(64, 'c'), {"deltas/x.osupd", 10, std::string(64, 'd')}});
  const ChannelIndex idx = index_with({release("1.0.0"), r});
  const std::string text = idx.to_json();
  CHECK(ChannelIndex::parse(text) == idx);
  CHECK(text == ChannelIndex::parse(text).to_json());  // deterministic bytes

  auto j = nlohmann::json::parse(text);
  SECTION("unknown fields are refused by name") {
    j["releases"][1]["deltas"][0]["file"]["extra"] = 1;
    CHECK_THROWS_WITH(ChannelIndex::parse(j.dump()),
                      Contains("unknown field 'releases[1].deltas[0].file.extra'"));
  }
  SECTION("paths may not leave the channel") {
    for (const char* bad : {"../x.osup", "/etc/passwd", "a//b", "a/./b", "http://evil/x", ""}) {
      j["releases"][0]["bundle"]["path"] = bad;
      CHECK_THROWS_WITH(ChannelIndex::parse(j.dump()), Contains("releases[0].bundle.path"));
    }
  }
  SECTION("rollout is a percentage") {
    j["releases"][0]["rollout_percent"] = 101;
    CHECK_THROWS_WITH(ChannelIndex::parse(j.dump()), Contains("rollout_percent"));
  }
  SECTION("a newer format asks for a newer osup") {
    j["format"] = 2;
    CHECK_THROWS_WITH(ChannelIndex::parse(j.dump()), Contains("update osup first"));
  }
  SECTION("a release cannot appear twice") {
    j["releases"][1]["version"] = "1.0.0";
    CHECK_THROWS_WITH(ChannelIndex::parse(j.dump()), Contains("repeats release 0"));
  }
  SECTION("not JSON") { CHECK_THROWS_WITH(ChannelIndex::parse("{"), Contains("not valid JSON")); }
}

TEST_CASE("pick_release takes the newest admitted release of this image", "[unit]") {
  ChannelRelease other_arch = release("9.0.0");
  other_arch.arch = "aarch64";
  ChannelRelease other_image = release("8.0.0");
  other_image.compatible = "desktop-x86_64";
  const ChannelIndex idx = index_with(
      {release("1.0.0"), release("2.0.0"), release("3.0.0", 0), other_arch, other_image});
  const ChannelRelease* r = pick_release(idx, "x86_64", "minimal-x86_64", "1.0.0", "m1");
  REQUIRE(r);
  CHECK(r->version == "2.0.0");  // 3.0.0 is at 0 %, 9.0.0 and 8.0.0 are other images
  CHECK(pick_release(idx, "x86_64", "minimal-x86_64", "2.0.0", "m1") == nullptr);
  CHECK(pick_release(idx, "x86_64", "minimal-x86_64", "10", "m1") == nullptr);
}

TEST_CASE("staged rollout: shares match the percentage, answers are stable and widen", "[unit]") {
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", i * 2654435761u, i, 0x5eed, i ^ 0xabcdu);
    ids.emplace_back(buf);
  }
  for (int percent : {1, 10, 25, 50, 90}) {
    int admitted = 0;
    for (const auto& id : ids) admitted += rollout_bucket(id, "2.0.0") < percent;
    INFO("percent " << percent << " admitted " << admitted);
    CHECK(std::abs(admitted - percent * 10) <= 30);  // within 3 % of 1000 machines
  }
  std::set<std::string> at10, at30;
  for (const auto& id : ids) {
    CHECK(rollout_bucket(id, "2.0.0") == rollout_bucket(id, "2.0.0"));  // stable
    if (rollout_bucket(id, "2.0.0") < 10) at10.insert(id);
    if (rollout_bucket(id, "2.0.0") < 30) at30.insert(id);
  }
  for (const auto& id : at10) CHECK(at30.count(id));  // raising N only adds machines
  // Another release draws other machines first.
  int same = 0;
  for (const auto& id : ids)
    same += (rollout_bucket(id, "2.0.0") < 10) && (rollout_bucket(id, "3.0.0") < 10);
  CHECK(same < 40);
}
