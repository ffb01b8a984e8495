// Boot control against real file systems: a plain directory (a mounted ESP) and FAT
// images through mtools; grub-editenv and grub-script-check as oracles for GRUB.
#include "updater/boot_control.h"

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "format/error.h"
#include "format/fd.h"
#include "format/process.h"
#include "tests/support/test_support.h"
#include "updater/esp_access.h"
#include "updater/fake_boot_control.h"
#include "updater/grub_env.h"
#include "updater/systemd_boot.h"

namespace fs = std::filesystem;
using namespace osup;
using Catch::Matchers::Contains;
using layout::Slot;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// A 64 MiB FAT32 file system at `offset` inside `path` (offset 0: the file is the FS).
void make_fat_image(const std::string& path, uint64_t offset) {
  const std::string fat = offset ? path + ".fat" : path;
  run_checked({"mkfs.vfat", "-F", "32", "-n", "OSUP-ESP", "-C", fat, "65536"});
  if (!offset) return;
  const std::string bytes = read_text_file(fat);
  UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
  pwrite_all(fd.get(), std::as_bytes(std::span(bytes.data(), bytes.size())), offset, path);
  fs::remove(fat);
}

// An ESP of either kind, in a scratch directory.
struct Esp {
  test::TempDir dir;
  std::string kind, image;
  uint64_t offset = 0;
  std::shared_ptr<EspAccess> esp;

  explicit Esp(const std::string& k) : kind(k) {
    if (kind == "mounted") {
      fs::create_directory(dir / "esp");
      esp = open_mounted_esp(dir / "esp");
    } else {
      image = dir / "disk.img";
      offset = kind == "image@1MiB" ? kMiB : 0;
      make_fat_image(image, offset);
      esp = open_image_esp(image, offset);
    }
  }
  // The file system is still consistent (image only; fsck.vfat needs the bare FS).
  void fsck() const {
    if (kind != "image@0") return;
    RunResult r = run({"fsck.vfat", "-n", image});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
  }
};

void add_kernels(EspAccess& esp) {
  esp.mkdirs("/osup/a");
  esp.mkdirs("/osup/b");
  esp.write_atomic("/osup/a/vmlinuz", "kernel a");
  esp.write_atomic("/osup/b/vmlinuz", "kernel b");
}

EntrySpec spec_for(Slot s, const std::string& version, int tries = 3) {
  const std::string c(1, layout::slot_char(s));
  return EntrySpec{"Osup Test", version, "/osup/" + c + "/vmlinuz", "/osup/" + c + "/initrd",
                   "quiet ro",  tries};
}

std::string entries(const EspAccess& esp) {
  std::string out;
  for (const auto& n : esp.list(kEntriesDir)) out += n + " ";
  return out;
}

}  // namespace

TEST_CASE("ESP access round-trips files on a directory and in FAT images", "[unit]") {
  Esp e(GENERATE(as<std::string>{}, "mounted", "image@0", "image@1MiB"));
  INFO(e.kind);
  EspAccess& esp = *e.esp;

  CHECK(esp.list("/nothing").empty());
  CHECK_FALSE(esp.read("/nothing/x").has_value());
  CHECK_FALSE(esp.exists("/loader"));

  esp.mkdirs("/loader/entries");
  esp.mkdirs("/loader/entries");  // existing is fine
  CHECK(esp.exists("/loader/entries"));
  CHECK(esp.list("/loader") == std::vector<std::string>{"entries"});

  const std::string binary("line1\nline2\0\xff\\end", 19);
  esp.write_atomic("/loader/entries/osup-a+3.conf", binary);
  CHECK(esp.read("/loader/entries/osup-a+3.conf") == binary);
  esp.write_atomic("/loader/entries/osup-a+3.conf", "replaced");
  CHECK(esp.read("/loader/entries/osup-a+3.conf") == "replaced");
  esp.write_atomic("/loader/entries/osup-b.conf", "b");
  CHECK(esp.list("/loader/entries") ==
        std::vector<std::string>{"osup-a+3.conf", "osup-b.conf"});            // no .tmp left over
  if (e.kind != "mounted") CHECK(esp.exists("/LOADER/Entries/OSUP-B.CONF"));  // FAT ignores case

  esp.rename("/loader/entries/osup-a+3.conf", "/loader/entries/osup-a+2-1.conf");
  CHECK(esp.list("/loader/entries") == std::vector<std::string>{"osup-a+2-1.conf", "osup-b.conf"});
  esp.rename("/loader/entries/osup-a+2-1.conf", "/loader/entries/osup-b.conf");  // over a file
  CHECK(esp.list("/loader/entries") == std::vector<std::string>{"osup-b.conf"});
  CHECK(esp.read("/loader/entries/osup-b.conf") == "replaced");

  test::write_random_file(e.dir / "kernel", 300000, 7);
  esp.copy_in(e.dir / "kernel", "/loader/vmlinuz");
  CHECK(esp.read("/loader/vmlinuz") == read_text_file(e.dir / "kernel"));

  esp.remove("/loader/entries/osup-b.conf");
  esp.remove("/loader/entries/osup-b.conf");  // missing is fine
  CHECK(esp.list("/loader/entries").empty());

  CHECK_THROWS_WITH(esp.read("relative"), Contains("is not absolute"));
  CHECK_THROWS_WITH(esp.write_atomic("/loader/../x", "x"), Contains("contains '..'"));
  CHECK_THROWS(esp.copy_in(e.dir / "no-such-file", "/x"));
  e.fsck();
}

TEST_CASE("ESP access reports what is wrong", "[unit]") {
  test::TempDir dir;
  CHECK_THROWS_WITH(open_mounted_esp(dir / "missing"), Contains("is not a directory"));
  CHECK_THROWS_WITH(open_image_esp(dir / "missing.img", 0), Contains("missing.img"));
  test::write_random_file(dir / "junk.img", 4 * kMiB, 1);
  auto esp = open_image_esp(dir / "junk.img", 0);
  CHECK_THROWS_WITH((void)esp->list("/"), Contains("is there a FAT file system at that offset?"));
  CHECK_THROWS_WITH(esp->write_atomic("/x", "x"), Contains("junk.img@@0"));
}

TEST_CASE("strverscmp_improved orders versions like systemd", "[unit]") {
  // The order systemd documents for strverscmp_improved, oldest first.
  const std::vector<std::string> ordered = {"122.1",   "123~rc1-1", "123",     "123-a",
                                            "123-a.1", "123-1",     "123-1.1", "123^post1",
                                            "123.a-1", "123.1-1",   "123a-1",  "124-1"};
  for (size_t i = 0; i < ordered.size(); ++i)
    for (size_t j = 0; j < ordered.size(); ++j) {
      INFO(ordered[i] << " vs " << ordered[j]);
      const int r = strverscmp_improved(ordered[i], ordered[j]);
      CHECK((i < j ? r < 0 : i > j ? r > 0 : r == 0));
    }
  CHECK(strverscmp_improved("10", "9") > 0);
  CHECK(strverscmp_improved("010", "10") == 0);
  CHECK(strverscmp_improved("osup-b.conf", "osup-a+3.conf") > 0);
  CHECK(strverscmp_improved("", "1") < 0);
}

TEST_CASE("loader entries are parsed as systemd-boot does", "[unit]") {
  const std::string body = "title T\nsort-key osup\nversion 4\nlinux /k\n";
  auto tries = [&](const std::string& f) {
    auto e = parse_loader_entry(f, body);
    REQUIRE(e);
    return std::pair{e->tries_left, e->tries_done};
  };
  CHECK(tries("x+3.conf") == std::pair{3, 0});
  CHECK(tries("x+2-1.conf") == std::pair{2, 1});
  CHECK(tries("x+0-3.conf") == std::pair{0, 3});
  CHECK(tries("a+1+2-5.conf") == std::pair{2, 5});  // the last '+' counts
  CHECK(tries("x.conf") == std::pair{-1, -1});
  CHECK(tries("x+a.conf") == std::pair{-1, -1});
  CHECK(tries("x+3-.conf") == std::pair{-1, -1});
  CHECK(tries("x+3.CONF") == std::pair{-1, -1});  // the suffix compare is exact
  auto e = parse_loader_entry("Osup-A.conf", body);
  REQUIRE(e);
  CHECK(e->id == "osup-a.conf");
  CHECK(e->version == "4");
  CHECK(e->sort_key == "osup");
  CHECK(e->linux_path == "/k");
  CHECK_FALSE(parse_loader_entry("auto-x.conf", body));
  CHECK_FALSE(parse_loader_entry("x.conf.tmp", body));
  CHECK_FALSE(parse_loader_entry("x.conf", "title no kernel\n"));

  // Exhausted last, sort-key before none, higher version first, then id descending.
  LoaderEntry fresh{"osup-a+3.conf", "osup-a+3.conf", "", "osup", "2", "", "/k", 3, 0};
  LoaderEntry good{"osup-b.conf", "osup-b.conf", "", "osup", "1", "", "/k", -1, -1};
  LoaderEntry exhausted{"osup-c+0-3.conf", "osup-c+0-3.conf", "", "osup", "9", "", "/k", 0, 3};
  LoaderEntry foreign{"debian.conf", "debian.conf", "", "", "", "", "/k", -1, -1};
  CHECK(compare_loader_entries(fresh, good) < 0);
  CHECK(compare_loader_entries(good, exhausted) < 0);
  CHECK(compare_loader_entries(foreign, exhausted) < 0);
  CHECK(compare_loader_entries(good, foreign) < 0);
  good.version = "10";
  CHECK(compare_loader_entries(good, fresh) < 0);  // 10 > 2 numerically
}

TEST_CASE("systemd-boot: switch, boot counting, rollback", "[unit]") {
  Esp e(GENERATE(as<std::string>{}, "mounted", "image@1MiB"));
  INFO(e.kind);
  EspAccess& esp = *e.esp;
  add_kernels(esp);
  SystemdBoot sd(e.esp);
  auto boot = [&](Slot expected) {
    // Our prediction and the simulated loader agree, and both are what the scenario expects.
    CHECK(sd.next_boot() == expected);
    auto picked = simulate_systemd_boot(esp);
    REQUIRE(picked);
    CHECK(picked->substr(0, 6) == std::string("osup-") + layout::slot_char(expected));
  };

  CHECK(sd.slot(Slot::a).state == SlotState::empty);
  CHECK_FALSE(sd.next_boot());

  sd.install(Slot::a, spec_for(Slot::a, "1.0"));
  CHECK(esp.read(kLoaderConf) == loader_conf());
  CHECK(entries(esp) == "osup-a+3.conf ");
  const std::string text = *esp.read("/loader/entries/osup-a+3.conf");
  CHECK_THAT(text, Contains("title Osup Test 1.0 (slot a)\n"));
  CHECK_THAT(text, Contains("sort-key osup\n"));
  CHECK_THAT(text, Contains("version 1\n"));
  CHECK_THAT(text, Contains("linux /osup/a/vmlinuz\n"));
  CHECK_THAT(text, Contains("initrd /osup/a/initrd\n"));
  CHECK_THAT(text, Contains("options quiet ro osup.slot=a\n"));
  SlotBoot a = sd.slot(Slot::a);
  CHECK(a.state == SlotState::trying);
  CHECK(a.tries_left == 3);
  CHECK(a.tries_done == 0);
  CHECK(a.generation == 1);
  CHECK(a.title == "Osup Test 1.0 (slot a)");
  CHECK(a.version == "1.0");

  boot(Slot::a);
  CHECK(entries(esp) == "osup-a+2-1.conf ");
  CHECK(sd.slot(Slot::a).tries_left == 2);
  CHECK(sd.slot(Slot::a).tries_done == 1);
  sd.mark_good(Slot::a);
  CHECK(entries(esp) == "osup-a.conf ");
  CHECK(sd.slot(Slot::a).state == SlotState::good);
  sd.mark_good(Slot::a);  // already good: nothing changes
  CHECK(entries(esp) == "osup-a.conf ");
  boot(Slot::a);
  CHECK(entries(esp) == "osup-a.conf ");  // good entries are not counted

  SECTION("a new slot boots first, is never pinned, and its exhaustion falls back") {
    sd.disable(Slot::b);  // nothing to disable yet
    sd.install(Slot::b, spec_for(Slot::b, "2.0"));
    CHECK(sd.slot(Slot::b).generation == 2);
    boot(Slot::b);
    boot(Slot::b);
    boot(Slot::b);
    CHECK(entries(esp) == "osup-a.conf osup-b+0-3.conf ");
    CHECK(sd.slot(Slot::b).state == SlotState::bad);
    boot(Slot::a);
    boot(Slot::a);
    CHECK(entries(esp) == "osup-a.conf osup-b+0-3.conf ");

    // The DESIGN fact: an explicit default naming the exhausted entry still boots it.
    esp.write_atomic(kLoaderConf, "default osup-b+0-3.conf\n");
    CHECK(sd.next_boot() == Slot::b);
    esp.write_atomic(kLoaderConf, loader_conf());
    CHECK(sd.next_boot() == Slot::a);
  }

  SECTION("marking the new slot good keeps it first") {
    sd.install(Slot::b, spec_for(Slot::b, "2.0"));
    boot(Slot::b);
    sd.mark_good(Slot::b);
    CHECK(entries(esp) == "osup-a.conf osup-b.conf ");
    boot(Slot::b);
    boot(Slot::b);

    // Rollback: a good slot goes first by a higher generation, without tries.
    sd.make_first(Slot::a);
    CHECK(sd.slot(Slot::a).generation == 3);
    CHECK(sd.slot(Slot::a).state == SlotState::good);
    CHECK(entries(esp) == "osup-a.conf osup-b.conf ");
    boot(Slot::a);
    sd.make_first(Slot::b);
    CHECK(sd.slot(Slot::b).generation == 4);
    boot(Slot::b);
  }

  SECTION("mark_bad passes a trying slot over") {
    sd.install(Slot::b, spec_for(Slot::b, "2.0", 5));
    boot(Slot::b);
    sd.mark_bad(Slot::b);
    CHECK(entries(esp) == "osup-a.conf osup-b+0-1.conf ");
    CHECK(sd.slot(Slot::b).state == SlotState::bad);
    CHECK(sd.slot(Slot::b).tries_done == 1);
    boot(Slot::a);
    // A forced rollback to the bad slot: first, without tries.
    sd.make_first(Slot::b);
    CHECK(entries(esp) == "osup-a.conf osup-b.conf ");
    CHECK(sd.slot(Slot::b).state == SlotState::good);
    CHECK(sd.slot(Slot::b).generation == 3);
    boot(Slot::b);
    boot(Slot::b);
  }

  SECTION("disable removes the entry before the slot is rewritten") {
    sd.install(Slot::b, spec_for(Slot::b, "2.0"));
    sd.disable(Slot::b);
    CHECK(entries(esp) == "osup-a.conf ");
    CHECK(sd.slot(Slot::b).state == SlotState::empty);
    boot(Slot::a);
    CHECK_THROWS_WITH(sd.make_first(Slot::b),
                      Contains("cannot make first slot b: it has no boot entry"));
    CHECK_THROWS_WITH(sd.mark_good(Slot::b), Contains("install it first"));
    CHECK_THROWS_WITH(sd.mark_bad(Slot::b), Contains("no boot entry"));
  }

  SECTION("both slots exhausted: the loader still boots one, the newest") {
    sd.install(Slot::b, spec_for(Slot::b, "2.0", 1));
    boot(Slot::b);
    sd.mark_bad(Slot::a);
    CHECK(entries(esp) == "osup-a+0.conf osup-b+0-1.conf ");
    boot(Slot::b);  // highest version among the exhausted ones
    CHECK(entries(esp) == "osup-a+0.conf osup-b+0-2.conf ");
  }

  SECTION("entries whose kernel is missing, and foreign entries, are not picked") {
    sd.install(Slot::b, spec_for(Slot::b, "2.0"));
    esp.write_atomic("/loader/entries/debian.conf", "title Debian\nlinux /osup/a/vmlinuz\n");
    boot(Slot::b);
    esp.remove("/osup/b/vmlinuz");
    boot(Slot::a);
    CHECK(sd.slot(Slot::b).state == SlotState::trying);  // still ours, just not bootable
  }

  SECTION("bad input") {
    CHECK_THROWS_WITH(sd.install(Slot::b, spec_for(Slot::b, "2", 0)), Contains("at least 1 try"));
    EntrySpec missing = spec_for(Slot::b, "2");
    missing.kernel = "/osup/b/none";
    CHECK_THROWS_WITH(sd.install(Slot::b, missing), Contains("kernel /osup/b/none is missing"));
    EntrySpec newline = spec_for(Slot::b, "2");
    newline.cmdline = "quiet\ninit=/bin/sh";
    CHECK_THROWS_WITH(sd.install(Slot::b, newline), Contains("contains a line break"));
    CHECK(sd.slot(Slot::b).state == SlotState::empty);
  }
  e.fsck();
}

TEST_CASE("systemd-boot: a crash mid-install leaves a bootable slot", "[unit]") {
  Esp e("mounted");
  add_kernels(*e.esp);
  SystemdBoot sd(e.esp);
  sd.install(Slot::a, spec_for(Slot::a, "1"));
  sd.mark_good(Slot::a);
  // A leftover temp file from an interrupted write is neither an entry nor a slot.
  e.esp->write_atomic("/loader/entries/osup-b+3.conf.tmp", "title half\nlinux /osup/b/vmlinuz\n");
  CHECK(sd.next_boot() == Slot::a);
  CHECK(sd.slot(Slot::b).state == SlotState::empty);
  sd.disable(Slot::b);
  CHECK(entries(*e.esp) == "osup-a.conf ");
  // Reinstalling a slot replaces its old entry (new one written first).
  sd.install(Slot::a, spec_for(Slot::a, "1.1"));
  CHECK(entries(*e.esp) == "osup-a+3.conf ");
  CHECK(sd.slot(Slot::a).version == "1.1");
}

TEST_CASE("grubenv matches grub-editenv", "[unit]") {
  test::TempDir dir;
  const std::string file = dir / "grubenv";
  run_checked({"grub-editenv", file, "create"});
  run_checked({"grub-editenv", file, "set", "ORDER=A B", "A_OK=1", "CMD=a\\b c", "NL=l1\nl2"});
  GrubEnv env = GrubEnv::parse(read_text_file(file), file);
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
  env = GrubEnv::parse(read_text_file(file), file);
  CHECK(env.get("X") == "1");
  CHECK(env.get("OSUP_A_CMDLINE") == "root=x \\ y");

  CHECK_THROWS_WITH(GrubEnv::parse("not an env", "x"), Contains("does not start with"));
  // A block outgrowing 1024 bytes grows in 1024-byte steps; grub-editenv handles it.
  GrubEnv big;
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
  auto& grub = dynamic_cast<GrubBootControl&>(*bc);
  CHECK(grub.env_path() == "/grub/grubenv");
  auto boot = [&](Slot expected) {
    CHECK(grub.next_boot() == expected);
    CHECK(simulate_grub_boot(esp, grub.env_path()) == expected);
  };
  // grub-editenv's view of the block on the ESP.
  auto editenv = [&](const std::vector<std::string>& args) {
    const std::string host = e.dir / "grubenv.host";
    atomic_write_file(host, *esp.read(grub.env_path()));
    std::vector<std::string> argv = {"grub-editenv", host};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out = run_checked(argv).out;
    esp.write_atomic(grub.env_path(), read_text_file(host));
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
    esp.write_atomic(grub.env_path(), "garbage");
    CHECK_THROWS_WITH(grub.slot(Slot::a), Contains("/grub/grubenv on the ESP"));
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
  CHECK(systemd_boot_loader_conf() == loader_conf());
  CHECK_THAT(loader_conf(), Contains("default osup-*\n"));
}

TEST_CASE("grubenv holds two slots with real dm-verity command lines", "[unit]") {
  Esp e("mounted");
  add_kernels(*e.esp);
  GrubBootControl grub(e.esp, "/EFI/debian/grubenv");
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
  const std::string block = *e.esp->read("/EFI/debian/grubenv");
  CHECK(block.size() == GrubEnv::kBlockSize);
  INFO(block);
  CHECK(grub.next_boot() == Slot::b);
  // Longer image command lines grow the block; GRUB reads any size.
  EntrySpec longer = spec_for(Slot::a, "2024.12.2");
  longer.cmdline = std::string(700, 'z');
  grub.install(Slot::a, longer);
  CHECK(e.esp->read("/EFI/debian/grubenv")->size() == 2 * GrubEnv::kBlockSize);
  CHECK(grub.slot(Slot::a).version == "2024.12.2");
  CHECK(simulate_grub_boot(*e.esp, grub.env_path()) == Slot::a);
  CHECK(e.esp->read("/EFI/debian/grubenv")->size() == 2 * GrubEnv::kBlockSize);
  CHECK(grub.slot(Slot::a).tries_left == 2);
}

TEST_CASE("make_boot_control picks the backend from the ESP", "[unit]") {
  Esp e("mounted");
  CHECK(make_boot_control("auto", e.esp)->name() == "systemd-boot");
  CHECK(make_boot_control("systemd-boot", e.esp)->name() == "systemd-boot");
  e.esp->mkdirs("/EFI/debian");
  e.esp->write_atomic("/EFI/debian/grubenv", GrubEnv{}.serialize());
  auto bc = make_boot_control("auto", e.esp);
  REQUIRE(bc->name() == "grub");
  CHECK(dynamic_cast<GrubBootControl&>(*bc).env_path() == "/EFI/debian/grubenv");
  e.esp->mkdirs("/grub");
  e.esp->write_atomic("/grub/grubenv", GrubEnv{}.serialize());
  CHECK(dynamic_cast<GrubBootControl&>(*make_boot_control("auto", e.esp)).env_path() ==
        "/grub/grubenv");
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
