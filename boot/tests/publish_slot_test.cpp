#include "boot/publish_slot.h"

#include <catch2/catch.hpp>

#include "base/error.h"
#include "boot/fake_boot_control.h"
#include "boot/slot_boot.h"
#include "boot/tests/esp_fixture.h"
#include "format/sha256.h"

using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;

namespace {

Manifest release_manifest(const std::string& version) {
  Manifest m;
  m.name = "demo";
  m.version = version;
  m.verity.root_hash = std::string(64, 'a');
  m.boot.cmdline = "quiet";
  m.boot.tries = 2;
  return m;
}

}  // namespace

TEST_CASE("publish_slot writes the boot files, then the entry; retire_slot undoes it", "[unit]") {
  Esp e("mounted");
  FakeBootControl boot;
  write_random_file(e.dir / "vmlinuz", 4096, 1);
  write_random_file(e.dir / "initrd", 8192, 2);
  const Manifest m = release_manifest("2.0");
  const SlotRelease r{m, "{manifest}", "sig", e.dir / "vmlinuz", e.dir / "initrd"};
  const SlotEspPaths p = slot_esp_paths(Slot::b);

  CHECK(publish_slot(*e.esp, boot, Slot::b, r));
  CHECK(e.esp->read(p.kernel) == read_text_file(e.dir / "vmlinuz"));
  CHECK(e.esp->read(p.initrd) == read_text_file(e.dir / "initrd"));
  CHECK(e.esp->read(p.manifest) == "{manifest}");
  CHECK(e.esp->read(p.signature) == "sig");
  REQUIRE(boot.log() == std::vector<std::string>{"install b"});
  const EntrySpec& spec = boot.entry(Slot::b).spec;
  CHECK(spec.title == "demo 2.0 (slot b)");
  CHECK(spec.kernel == p.kernel);
  CHECK(spec.initrd == p.initrd);
  CHECK(spec.tries == 2);
  CHECK(spec.cmdline == slot_cmdline(m, Slot::b));
  CHECK(boot.slot(Slot::b).state == SlotState::trying);

  retire_slot(*e.esp, boot, Slot::b);
  CHECK(boot.slot(Slot::b).state == SlotState::empty);
  CHECK_FALSE(e.esp->read(p.manifest));
  CHECK_FALSE(e.esp->read(p.signature));

  SECTION("a failing entry write leaves the files but no entry") {
    boot.fail_at_call(1);
    CHECK_THROWS_WITH(publish_slot(*e.esp, boot, Slot::b, r),
                      Contains("writing the boot entry of slot b") && Contains("injected"));
    CHECK(e.esp->read(p.manifest) == "{manifest}");
    CHECK(boot.slot(Slot::b).state == SlotState::empty);
  }
  SECTION("a release without a kernel gets files but no entry") {
    const SlotRelease bare{m, "{manifest}", "sig", "", ""};
    CHECK_FALSE(publish_slot(*e.esp, boot, Slot::a, bare));
    CHECK(e.esp->read(slot_esp_paths(Slot::a).manifest) == "{manifest}");
    CHECK_FALSE(e.esp->exists(slot_esp_paths(Slot::a).kernel));
    CHECK(boot.slot(Slot::a).state == SlotState::empty);
  }
  SECTION("the real systemd-boot backend gets the same entry") {
    SystemdBoot sd(e.esp);
    CHECK(publish_slot(*e.esp, sd, Slot::a, r));
    CHECK(sd.entry_file(Slot::a) == "osup-a+2.conf");
    const auto text = e.esp->read(std::string(kEntriesDir) + "/osup-a+2.conf");
    REQUIRE(text);
    CHECK_THAT(*text, Contains("options " + slot_cmdline(m, Slot::a) + "\n"));
  }
}

TEST_CASE("install_systemd_boot puts the loader where the firmware looks", "[unit]") {
  Esp e("image@0");
  write_random_file(e.dir / "sd.efi", 64ull * 1024, 3);
  install_systemd_boot(*e.esp, e.dir / "sd.efi", Arch::aarch64);
  const std::string want = read_text_file(e.dir / "sd.efi");
  CHECK(e.esp->read("/EFI/BOOT/BOOTAA64.EFI") == want);
  CHECK(e.esp->read("/EFI/systemd/systemd-bootaa64.efi") == want);
  CHECK(e.esp->read(kLoaderConf) == loader_conf());
  CHECK_THROWS_WITH(install_systemd_boot(*e.esp, e.dir / "none.efi", Arch::x86_64),
                    Contains("installing systemd-boot from") && Contains("none.efi"));
  e.fsck();
}
