#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "boot/fake_boot_control.h"
#include "boot/grub_env.h"
#include "boot/tests/esp_fixture.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;
using layout::Slot;

TEST_CASE("entry title and command line name the slot exactly once", "[unit]") {
  EntrySpec spec = spec_for(Slot::b, "1.2");
  CHECK(entry_title(spec, Slot::b) == "Osup Test 1.2 (slot b)");
  CHECK(entry_cmdline(spec, Slot::b) == "quiet ro osup.slot=b");
  spec.title = "minimal 1.2 (slot b)";  // slot_title() already names the slot
  spec.cmdline = "quiet osup.slot=b ro";
  CHECK(entry_title(spec, Slot::b) == "minimal 1.2 (slot b)");
  CHECK(entry_cmdline(spec, Slot::b) == "quiet osup.slot=b ro");
  spec.cmdline = "";
  CHECK(entry_cmdline(spec, Slot::a) == "osup.slot=a");
  spec.cmdline = "quiet osup.slot=a";
  CHECK_THROWS_WITH(entry_cmdline(spec, Slot::b),
                    Contains("boot entry of slot b has 'osup.slot=a' on its command line"));
  CHECK_THAT(loader_conf(), Contains("default osup-*\n"));
}

TEST_CASE("make_boot_control picks the backend from the ESP", "[unit]") {
  Esp e("mounted");
  CHECK(make_boot_control("auto", e.esp)->name() == "systemd-boot");
  CHECK(make_boot_control("systemd-boot", e.esp)->name() == "systemd-boot");
  e.esp->mkdirs("/EFI/debian");
  e.esp->write_atomic("/EFI/debian/grubenv", GrubEnvBlock{}.serialize());
  auto bc = make_boot_control("auto", e.esp);
  REQUIRE(bc->name() == "grub");
  CHECK(dynamic_cast<GrubEnv&>(*bc).env_path() == "/EFI/debian/grubenv");
  e.esp->mkdirs("/grub");
  e.esp->write_atomic("/grub/grubenv", GrubEnvBlock{}.serialize());
  CHECK(dynamic_cast<GrubEnv&>(*make_boot_control("auto", e.esp)).env_path() == "/grub/grubenv");
  CHECK_THROWS_WITH(make_boot_control("lilo", e.esp), Contains("unknown boot loader 'lilo'"));
  CHECK(std::string(to_string(SlotState::trying)) == "trying");
}

TEST_CASE("fake boot control follows the same rules and injects failures", "[unit]") {
  FakeBootControl fake;
  CHECK_FALSE(fake.next_boot());
  fake.install(Slot::a, spec_for(Slot::a, "1"));
  fake.mark_good(Slot::a);
  fake.install(Slot::b, spec_for(Slot::b, "2", 2));
  CHECK(fake.slot(Slot::b).generation == 2);
  CHECK(fake.simulate_boot() == Slot::b);
  CHECK(fake.simulate_boot() == Slot::b);
  CHECK(fake.slot(Slot::b).state == SlotState::bad);
  CHECK(fake.simulate_boot() == Slot::a);
  fake.make_first(Slot::a);
  CHECK(fake.slot(Slot::a).generation == 3);
  fake.make_first(Slot::b);  // a forced rollback to the bad slot
  CHECK(fake.slot(Slot::b).state == SlotState::good);
  CHECK(fake.next_boot() == Slot::b);
  CHECK_THROWS_WITH(FakeBootControl{}.mark_good(Slot::a), Contains("no boot entry"));

  fake.fail_at_call(2);
  fake.disable(Slot::b);
  CHECK_THROWS_WITH(fake.install(Slot::b, spec_for(Slot::b, "3")),
                    Contains("injected failure at boot-control call 7 (install)"));
  CHECK(fake.slot(Slot::b).state == SlotState::empty);  // the failed call changed nothing
  fake.install(Slot::b, spec_for(Slot::b, "3"));        // only the Nth call fails
  CHECK(fake.next_boot() == Slot::b);
  CHECK(fake.log() == std::vector<std::string>{"install a", "mark_good a", "install b",
                                               "make_first a", "make_first b", "disable b",
                                               "install b", "install b"});
}
