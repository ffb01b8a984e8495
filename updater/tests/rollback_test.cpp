#include "updater/tests/install_fixture.h"

using namespace osup;
using namespace osup::test;

TEST_CASE("rollback refuses an empty slot, even with force", "[unit]") {
  Rig rig;
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);
  const size_t calls = rig.boot.log().size();
  for (bool force : {false, true}) {
    const std::string message = rollback_error(rig, force);
    CHECK_THAT(message, Contains("cannot roll back: slot b holds no bootable version"));
    check_one_line(message);
  }
  CHECK(rig.calls_since(calls) == Calls{});
  CHECK(rig.boot.next_boot() == Slot::a);
}

TEST_CASE("rollback refuses a bad slot unless forced, and a slot that no longer checks out",
          "[unit]") {
  Rig rig;
  const Release v0 = rig.release("0.5.0");
  rig.put_slot(Slot::b, v0);
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);
  const size_t calls = rig.boot.log().size();

  SECTION("a good slot whose manifest and tree check out becomes first") {
    rig.disk.booted = Slot::a;  // as on a running system: a stays the booted slot
    const RollbackResult r = rollback(rig.disk, rig.boot, &rig.trust, false);
    CHECK(r.slot == Slot::b);
    CHECK(r.changed);
    CHECK_THAT(r.version, Catch::EndsWith(" 0.5.0"));
    CHECK(rig.calls_since(calls) == Calls{"make_first b"});
    CHECK(rig.boot.next_boot() == Slot::b);
    CHECK(rig.boot.slot(Slot::b).state == SlotState::good);
    CHECK(rig.boot.slot(Slot::a).state == SlotState::good);
    // Run again before the reboot: the same slot, reported unchanged, and nothing written.
    const RollbackResult again = rollback(rig.disk, rig.boot, &rig.trust, false);
    CHECK(again.slot == Slot::b);
    CHECK_FALSE(again.changed);
    CHECK(again.version == r.version);
    CHECK(rig.calls_since(calls) == Calls{"make_first b"});
  }
  SECTION("a bad slot is refused without force; with force it becomes first, as good") {
    rig.boot.mark_bad(Slot::b);
    const size_t after_bad = rig.boot.log().size();
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b is marked bad") &&
                            Contains("pass --force to try it anyway"));
    check_one_line(message);
    CHECK(rig.calls_since(after_bad) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);

    CHECK(rollback(rig.disk, rig.boot, nullptr, true).slot == Slot::b);
    CHECK(rig.calls_since(after_bad) == Calls{"make_first b"});
    CHECK(rig.boot.next_boot() == Slot::b);
    CHECK(rig.boot.slot(Slot::b).state == SlotState::good);
  }
  SECTION("without keys only force may roll back") {
    CHECK_THROWS_WITH(rollback(rig.disk, rig.boot, nullptr, false),
                      Contains("no trusted keys to check slot b with"));
    CHECK(rig.calls_since(calls) == Calls{});
  }
  SECTION("a kept manifest signed by another key is refused") {
    const sig::PrivateKey stranger = new_key(rig.dir, "stranger");
    atomic_write_file(rig.esp_dir + "/osup/b/manifest.json.sig", stranger.sign(v0.manifest_json));
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b's manifest is not signed by a "
                                 "trusted key"));
    check_one_line(message);
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);
  }
  SECTION("a kept manifest changed after signing is refused") {
    std::string text = v0.manifest_json;
    const size_t at = text.find("\"0.5.0\"");
    REQUIRE(at != std::string::npos);
    text[at + 1] = '7';
    atomic_write_file(rig.esp_dir + "/osup/b/manifest.json", text);
    CHECK_THAT(rollback_error(rig, false), Contains("slot b's manifest is not signed by a "
                                                    "trusted key"));
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);
  }
  SECTION("a damaged verity tree is refused; force skips the checks") {
    // The first tree block after the superblock: the level the root hash covers.
    rig.flip_byte(rig.disk.slot(Slot::b).verity.start + verity::kBlockSize + 5);
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b's verity tree"));
    check_one_line(message);
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);

    CHECK(rollback(rig.disk, rig.boot, nullptr, true).slot == Slot::b);
    CHECK(rig.calls_since(calls) == Calls{"make_first b"});
  }
  SECTION("a damaged verity superblock is refused") {
    rig.flip_byte(rig.disk.slot(Slot::b).verity.start + 100);
    CHECK_THAT(rollback_error(rig, false), Contains("cannot roll back: slot b's verity tree"));
    CHECK(rig.calls_since(calls) == Calls{});
  }
}
