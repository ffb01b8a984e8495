#include "boot/systemd_boot.h"

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

    // Rollback: a good slot goes first by a higher generation, without tries, under the
    // slot's other name (never a rename over the entry in use).
    sd.make_first(Slot::a);
    CHECK(sd.slot(Slot::a).generation == 3);
    CHECK(sd.slot(Slot::a).state == SlotState::good);
    CHECK(entries(esp) == "osup-a~1.conf osup-b.conf ");
    boot(Slot::a);
    sd.make_first(Slot::b);
    CHECK(sd.slot(Slot::b).generation == 4);
    CHECK(entries(esp) == "osup-a~1.conf osup-b~1.conf ");
    boot(Slot::b);
    sd.make_first(Slot::a);  // and back to the first name
    CHECK(entries(esp) == "osup-a.conf osup-b~1.conf ");
    CHECK(sd.slot(Slot::a).generation == 5);
    boot(Slot::a);
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
    CHECK(entries(esp) == "osup-a.conf osup-b~1.conf ");
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
  // Reinstalling a slot replaces its old entry (new one written first, under the other name).
  sd.install(Slot::a, spec_for(Slot::a, "1.1"));
  CHECK(entries(*e.esp) == "osup-a~1+3.conf ");
  CHECK(sd.slot(Slot::a).version == "1.1");
  // The entry on the other name is counted, marked good and bad like the first one.
  sd.mark_good(Slot::a);
  CHECK(entries(*e.esp) == "osup-a~1.conf ");
  CHECK(sd.next_boot() == Slot::a);
}

namespace {

// An ESP where reading a *.tmp fails, as mtools does on a file whose FAT chain a power
// cut left free (found by the power-loss campaign, docs/powerloss.md).
class BrokenTmpEsp final : public EspAccess {
 public:
  explicit BrokenTmpEsp(std::shared_ptr<EspAccess> esp, std::string broken = ".tmp")
      : esp_(std::move(esp)), broken_(std::move(broken)) {}
  std::string describe() const override { return esp_->describe(); }
  std::vector<std::string> list(const std::string& dir) const override { return esp_->list(dir); }
  std::optional<std::string> read(const std::string& path) const override {
    if (path.ends_with(broken_)) fail("mcopy on " + path + " failed (exit 1)");
    return esp_->read(path);
  }
  bool copy_out(const std::string& p, const std::string& h) const override {
    return esp_->copy_out(p, h);
  }
  void write_atomic(const std::string& p, std::string_view c) override { esp_->write_atomic(p, c); }
  void copy_in(const std::string& h, const std::string& p) override { esp_->copy_in(h, p); }
  void rename(const std::string& f, const std::string& t) override { esp_->rename(f, t); }
  void remove(const std::string& p) override { esp_->remove(p); }
  void mkdirs(const std::string& d) override { esp_->mkdirs(d); }

 private:
  std::shared_ptr<EspAccess> esp_;
  std::string broken_;
};

}  // namespace

TEST_CASE("systemd-boot: an unreadable leftover temp entry does not hide the real ones", "[unit]") {
  Esp e("mounted");
  add_kernels(*e.esp);
  SystemdBoot sd(e.esp);
  sd.install(Slot::a, spec_for(Slot::a, "1"));
  sd.mark_good(Slot::a);
  e.esp->write_atomic("/loader/entries/osup-b+3.conf.tmp", "title half\nlinux /osup/b/vmlinuz\n");
  auto broken = std::make_shared<BrokenTmpEsp>(e.esp);
  CHECK(systemd_boot_pick(*broken) == "osup-a.conf");
  CHECK(SystemdBoot(broken).next_boot() == Slot::a);
}

TEST_CASE("systemd-boot: an old entry a cut left on freed clusters does not hide the new one",
          "[unit]") {
  Esp e("mounted");
  add_kernels(*e.esp);
  SystemdBoot sd(e.esp);
  sd.install(Slot::a, spec_for(Slot::a, "1"));
  sd.mark_good(Slot::a);
  const std::string old = *e.esp->read("/loader/entries/osup-a.conf");
  sd.install(Slot::b, spec_for(Slot::b, "2"));
  sd.mark_good(Slot::b);
  sd.make_first(Slot::a);  // osup-a~1.conf, generation 3
  // The cut came while osup-a.conf was being removed: its record is still there, but
  // its clusters are free and reading it fails.
  e.esp->write_atomic("/loader/entries/osup-a.conf", old);
  auto broken = std::make_shared<BrokenTmpEsp>(e.esp, "/osup-a.conf");
  CHECK(systemd_boot_pick(*broken) == "osup-a~1.conf");
  CHECK(SystemdBoot(broken).next_boot() == Slot::a);
  // Read as it was, the old entry still loses: its generation is lower.
  CHECK(systemd_boot_pick(*e.esp) == "osup-a~1.conf");
}
