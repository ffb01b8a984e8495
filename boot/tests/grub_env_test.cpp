#include "boot/grub_env.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "boot/tests/esp_fixture.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;
using layout::Slot;

TEST_CASE("grubenv matches grub-editenv", "[unit]") {
  test::TempDir dir;
  const std::string file = dir / "grubenv";
  run_checked({"grub-editenv", file, "create"});
  run_checked({"grub-editenv", file, "set", "ORDER=A B", "A_OK=1", "CMD=a\\b c", "NL=l1\nl2"});
  GrubEnvBlock env = GrubEnvBlock::parse(read_text_file(file), file);
  CHECK(env.get("ORDER") == "A B");
  CHECK(env.get("A_OK") == "1");
  CHECK(env.get("CMD") == "a\\b c");
  CHECK(env.get("NL") == "l1\nl2");
  CHECK_FALSE(env.get("B_OK"));

  env.set("A_OK", "0");
  env.set("OSUP_A_CMDLINE", "root=x \\ y");
  env.unset("NL");
  const std::string block = env.serialize();
  CHECK(block.size() == 1024);
  atomic_write_file(file, block);
  CHECK(run_checked({"grub-editenv", file, "list"}).out ==
        "ORDER=A B\nA_OK=0\nCMD=a\\b c\nOSUP_A_CMDLINE=root=x \\ y\n");
  run_checked({"grub-editenv", file, "set", "X=1"});
  env = GrubEnvBlock::parse(read_text_file(file), file);
  CHECK(env.get("X") == "1");
  CHECK(env.get("OSUP_A_CMDLINE") == "root=x \\ y");

  CHECK_THROWS_WITH(GrubEnvBlock::parse("not an env", "x"), Contains("does not start with"));
  // A block outgrowing 1024 bytes grows in 1024-byte steps; grub-editenv handles it.
  GrubEnvBlock big;
  big.set("OSUP_A_CMDLINE", std::string(1100, 'x'));
  const std::string grown = big.serialize();
  CHECK(grown.size() == 2048);
  CHECK(big.serialize(4096).size() == 4096);
  atomic_write_file(file, grown);
  run_checked({"grub-editenv", file, "set", "A_TRY=2"});
  CHECK(read_text_file(file).size() == 2048);
  CHECK(run_checked({"grub-editenv", file, "list"}).out ==
        "OSUP_A_CMDLINE=" + std::string(1100, 'x') + "\nA_TRY=2\n");
  big.set("OSUP_B_CMDLINE", std::string(8000, 'y'));
  CHECK_THROWS_WITH(big.serialize(), Contains("shorten the kernel command lines"));
  CHECK_THROWS_WITH(big.set("A=B", "1"), Contains("is invalid"));
}

TEST_CASE("grub: switch, boot counting, rollback", "[unit]") {
  Esp e(GENERATE(as<std::string>{}, "mounted", "image@0"));
  INFO(e.kind);
  EspAccess& esp = *e.esp;
  add_kernels(esp);
  auto bc = make_boot_control("grub", e.esp);
  REQUIRE(bc->name() == "grub");
  auto& grub = dynamic_cast<GrubEnv&>(*bc);
  CHECK(grub.env_path() == "/grub/grubenv");
  auto boot = [&](Slot expected) {
    CHECK(grub.next_boot() == expected);
    CHECK(simulate_grub_boot(esp, grub.env_path()) == expected);
  };
  // grub-editenv's view of the block on the ESP.
  auto editenv = [&](const std::vector<std::string>& args) {
    const std::string host = e.dir / "grubenv.host", current = grub.current_path();
    atomic_write_file(host, *esp.read(current));
    std::vector<std::string> argv = {"grub-editenv", host};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out = run_checked(argv).out;
    esp.write_atomic(current, read_text_file(host));
    return out;
  };

  CHECK_FALSE(grub.next_boot());
  grub.install(Slot::a, spec_for(Slot::a, "1.0"));
  const std::string listed = editenv({"list"});
  CHECK_THAT(listed, Contains("ORDER=A B\n"));
  CHECK_THAT(listed, Contains("A_OK=0\n"));
  CHECK_THAT(listed, Contains("A_TRY=3\n"));
  CHECK_THAT(listed, Contains("OSUP_A_KERNEL=/osup/a/vmlinuz\n"));
  CHECK_THAT(listed, Contains("OSUP_A_CMDLINE=quiet ro osup.slot=a\n"));
  SlotBoot a = grub.slot(Slot::a);
  CHECK(a.state == SlotState::trying);
  CHECK(a.tries_left == 3);
  CHECK(a.generation == 1);
  CHECK(a.version == "1.0");
  CHECK(a.title == "Osup Test 1.0 (slot a)");
  boot(Slot::a);
  CHECK(grub.slot(Slot::a).tries_left == 2);
  CHECK(grub.slot(Slot::a).tries_done == 1);
  grub.mark_good(Slot::a);
  CHECK(grub.slot(Slot::a).state == SlotState::good);
  boot(Slot::a);
  CHECK(grub.slot(Slot::a).state == SlotState::good);

  SECTION("new slot first; exhausted falls back; grub-editenv edits survive") {
    grub.install(Slot::b, spec_for(Slot::b, "2.0"));
    CHECK(grub.slot(Slot::b).generation == 2);
    CHECK_THAT(editenv({"list"}), Contains("ORDER=B A\n"));
    editenv({"set", "FOREIGN=kept"});
    boot(Slot::b);
    boot(Slot::b);
    boot(Slot::b);
    CHECK(grub.slot(Slot::b).state == SlotState::bad);
    CHECK(grub.slot(Slot::b).tries_done == 3);
    boot(Slot::a);
    CHECK_THAT(editenv({"list"}), Contains("FOREIGN=kept\n"));
  }

  SECTION("mark good, rollback with make_first") {
    grub.install(Slot::b, spec_for(Slot::b, "2.0"));
    boot(Slot::b);
    grub.mark_good(Slot::b);
    boot(Slot::b);
    grub.make_first(Slot::a);
    CHECK(grub.slot(Slot::a).generation == 3);
    CHECK(grub.slot(Slot::a).state == SlotState::good);
    boot(Slot::a);
  }

  SECTION("mark_bad, forced rollback, disable") {
    grub.install(Slot::b, spec_for(Slot::b, "2.0"));
    grub.mark_bad(Slot::b);
    CHECK(grub.slot(Slot::b).state == SlotState::bad);
    boot(Slot::a);
    grub.make_first(Slot::b);
    CHECK(grub.slot(Slot::b).state == SlotState::good);
    boot(Slot::b);
    boot(Slot::b);
    grub.make_first(Slot::a);
    grub.disable(Slot::b);
    CHECK(grub.slot(Slot::b).state == SlotState::empty);
    CHECK_THROWS_WITH(grub.make_first(Slot::b),
                      Contains("cannot make first slot b: it has no boot entry"));
    boot(Slot::a);
    grub.mark_bad(Slot::a);  // nothing else left: still boot a, like systemd-boot
    boot(Slot::a);
  }

  SECTION("bad input") {
    CHECK_THROWS_WITH(grub.install(Slot::b, spec_for(Slot::b, "2", 10)),
                      Contains("at most 9 tries"));
    EntrySpec big = spec_for(Slot::b, "2");
    big.cmdline = std::string(9000, 'x');
    CHECK_THROWS_WITH(grub.install(Slot::b, big), Contains("installing the boot entry of slot b"));
    CHECK_THROWS_WITH(grub.install(Slot::b, big), Contains("shorten the kernel command lines"));
    CHECK(grub.slot(Slot::b).state == SlotState::empty);
    const std::string current = grub.current_path();
    esp.write_atomic(current, "garbage");
    CHECK_THROWS_WITH(grub.slot(Slot::a), Contains(current + " on the ESP"));
  }
  e.fsck();
}

TEST_CASE("osup.cfg is valid GRUB script using the variables osup writes", "[unit]") {
  const std::string cfg = test::source_dir() + "/bootloader-hooks/grub/osup.cfg";
  RunResult r = run({"grub-script-check", cfg});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  const std::string text = read_text_file(cfg);
  for (const char* v :
       {"ORDER", "A_OK", "A_TRY", "B_OK", "B_TRY", "OSUP_A_KERNEL", "OSUP_A_INITRD",
        "OSUP_A_CMDLINE", "OSUP_B_KERNEL", "OSUP_B_INITRD", "OSUP_B_CMDLINE", "save_env"})
    CHECK_THAT(text, Contains(v));
  // grub-script-check really parses: a broken copy is rejected.
  test::TempDir dir;
  atomic_write_file(dir / "broken.cfg", text + "\nif [ x ]; then\n");
  CHECK(run({"grub-script-check", dir / "broken.cfg"}).exit_code != 0);
}

TEST_CASE("grubenv holds two slots with real dm-verity command lines", "[unit]") {
  Esp e("mounted");
  add_kernels(*e.esp);
  GrubEnv grub(e.esp, "/EFI/debian/grubenv");
  for (Slot s : {Slot::a, Slot::b}) {
    const char c = layout::slot_char(s);
    EntrySpec spec = spec_for(s, "2024.12.1");
    spec.title = std::string("desktop 2024.12.1 (slot ") + c + ")";
    spec.cmdline =
        "console=ttyS0,115200 console=tty0 quiet loglevel=3 roothash=" + std::string(64, 'f') +
        " systemd.verity_root_data=PARTUUID=" + std::string(36, 'e') +
        " systemd.verity_root_hash=PARTUUID=" + std::string(36, 'd') + " osup.slot=" + c;
    grub.install(s, spec);
  }
  const std::string block = *e.esp->read(grub.current_path());
  CHECK(block.size() == GrubEnvBlock::kBlockSize);
  INFO(block);
  CHECK(grub.next_boot() == Slot::b);
  // Longer image command lines grow the block; GRUB reads any size.
  EntrySpec longer = spec_for(Slot::a, "2024.12.2");
  longer.cmdline = std::string(700, 'z');
  grub.install(Slot::a, longer);
  CHECK(e.esp->read(grub.current_path())->size() == 2 * GrubEnvBlock::kBlockSize);
  CHECK(grub.slot(Slot::a).version == "2024.12.2");
  CHECK(simulate_grub_boot(*e.esp, grub.env_path()) == Slot::a);
  CHECK(e.esp->read(grub.current_path())->size() == 2 * GrubEnvBlock::kBlockSize);
  CHECK(grub.slot(Slot::a).tries_left == 2);
}
