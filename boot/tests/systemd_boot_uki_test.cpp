#include "boot/systemd_boot_uki.h"

#include <catch2/catch.hpp>
#include <cctype>

#include "base/error.h"
#include "boot/publish_slot.h"
#include "boot/slot_boot.h"
#include "boot/tests/esp_fixture.h"
#include "boot/uki.h"

using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;

namespace {

// Passes everything to a real ESP and fails the test when a rename would replace an
// existing file: on FAT that is not atomic, and a crash in it can leave neither name.
class NoRenameOver final : public EspAccess {
 public:
  explicit NoRenameOver(std::shared_ptr<EspAccess> esp) : esp_(std::move(esp)) {}
  std::string describe() const override { return esp_->describe(); }
  std::vector<std::string> list(const std::string& d) const override { return esp_->list(d); }
  std::optional<std::string> read(const std::string& p) const override { return esp_->read(p); }
  bool copy_out(const std::string& p, const std::string& h) const override {
    return esp_->copy_out(p, h);
  }
  void write_atomic(const std::string& p, std::string_view c) override { esp_->write_atomic(p, c); }
  void copy_in(const std::string& h, const std::string& p) override {
    if (p.starts_with(kUkiDir)) CHECK_FALSE(esp_->exists(p));
    esp_->copy_in(h, p);
  }
  void rename(const std::string& from, const std::string& to) override {
    INFO(from << " -> " << to);
    CHECK_FALSE(esp_->exists(to));
    esp_->rename(from, to);
  }
  void remove(const std::string& p) override { esp_->remove(p); }
  void mkdirs(const std::string& d) override { esp_->mkdirs(d); }

 private:
  std::shared_ptr<EspAccess> esp_;
};

Manifest release(const std::string& version) {
  Manifest m;
  m.name = "demo";
  m.version = version;
  m.arch = "x86_64";
  m.compatible = "demo-x86_64";
  m.filesystem = "erofs";
  m.verity.root_hash = std::string(64, 'a');
  m.verity.uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
  m.verity.data_size = 4096;
  m.verity.hash_size = 4096;
  m.boot.kernel_version = "6.1";
  m.boot.tries = 3;
  using K = PayloadKind;
  const std::string h(64, '1');
  m.payloads = {{K::kernel, "vmlinuz", Compression::none, 1, h},
                {K::uki_a, "slot-a.efi", Compression::none, 1, h},
                {K::uki_b, "slot-b.efi", Compression::none, 1, h},
                {K::verity, "root.verity", Compression::none, 4096, h},
                {K::root, "root.erofs", Compression::none, 4096, h}};
  return m;
}

std::string ukis(const EspAccess& esp) {
  std::string out;
  // mtools stores names that fit 8.3 in upper case; the loader and FAT ignore case.
  for (auto n : esp.list(kUkiDir)) {
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += n + " ";
  }
  return out;
}

}  // namespace

TEST_CASE("Type #2 entry names parse back", "[unit]") {
  auto n = parse_uki_entry_name("osup-12-b+2-1.efi");
  REQUIRE(n);
  CHECK(n->slot == Slot::b);
  CHECK(n->generation == 12);
  CHECK(n->tries_left == 2);
  CHECK(n->tries_done == 1);
  n = parse_uki_entry_name("OSUP-3-A.EFI");  // FAT and the loader ignore case
  REQUIRE(n);
  CHECK(n->slot == Slot::a);
  CHECK(n->tries_left == -1);
  CHECK(parse_uki_entry_name("osup-7-b+0-3.efi")->tries_left == 0);
  for (const char* other : {"osup-a.efi", "osup-7-c.efi", "osup-7-b.conf", "debian.efi",
                            "osup--a.efi", "osup-7-ab.efi", "osup-7-b+x.efi", "osup-7-b.efi.tmp"}) {
    INFO(other);
    CHECK_FALSE(parse_uki_entry_name(other));
  }
}

TEST_CASE("systemd-boot Type #2: switch and counting and rollback without renaming over a file",
          "[unit]") {
  Esp e(GENERATE(as<std::string>{}, "mounted", "image@1MiB"));
  INFO(e.kind);
  auto esp = std::make_shared<NoRenameOver>(e.esp);
  SystemdBootUki sd(esp);
  write_random_file(e.dir / "uki-a", 4096, 1);
  write_random_file(e.dir / "uki-b", 4096, 2);
  EntrySpec spec{"demo", "1.0", "", "", "", 3, e.dir / "uki-a"};
  auto boot = [&](Slot expected) {
    // Our prediction and the simulated loader agree, and both are what the scenario expects.
    CHECK(sd.next_boot() == expected);
    auto picked = simulate_systemd_boot(*esp);
    REQUIRE(picked);
    CHECK(parse_uki_entry_name(*picked)->slot == expected);
  };
  CHECK(sd.slot(Slot::a).state == SlotState::empty);
  CHECK_FALSE(has_uki_entries(*esp));

  sd.install(Slot::a, spec);
  CHECK(ukis(*esp) == "osup-1-a+3.efi ");
  CHECK(esp->read("/EFI/Linux/osup-1-a+3.efi") == read_text_file(e.dir / "uki-a"));
  CHECK(esp->read(kLoaderConf) == loader_conf(true));
  CHECK(has_uki_entries(*esp));
  CHECK(make_boot_control("auto", e.esp)->name() == kSystemdBootUki);
  boot(Slot::a);
  CHECK(ukis(*esp) == "osup-1-a+2-1.efi ");
  sd.mark_good(Slot::a);
  CHECK(ukis(*esp) == "osup-1-a.efi ");
  sd.mark_good(Slot::a);
  boot(Slot::a);
  CHECK(ukis(*esp) == "osup-1-a.efi ");

  spec.uki = e.dir / "uki-b";
  sd.install(Slot::b, spec);
  const SlotBoot b = sd.slot(Slot::b);
  CHECK(b.state == SlotState::trying);
  CHECK(b.generation == 2);
  CHECK(b.tries_left == 3);

  SECTION("a trial slot that never proves itself falls back to the good one") {
    boot(Slot::b);
    boot(Slot::b);
    boot(Slot::b);
    CHECK(ukis(*esp) == "osup-1-a.efi osup-2-b+0-3.efi ");
    CHECK(sd.slot(Slot::b).state == SlotState::bad);
    boot(Slot::a);
  }
  SECTION("mark-good keeps the new slot; rollback goes back by a higher generation") {
    boot(Slot::b);
    sd.mark_good(Slot::b);
    boot(Slot::b);
    sd.make_first(Slot::a);
    CHECK(ukis(*esp) == "osup-2-b.efi osup-3-a.efi ");
    CHECK(sd.slot(Slot::a).state == SlotState::good);
    boot(Slot::a);
    sd.make_first(Slot::b);
    boot(Slot::b);
    CHECK(sd.slot(Slot::b).generation == 4);
  }
  SECTION("mark-bad passes the trial slot over; a forced rollback makes it good and first") {
    boot(Slot::b);
    sd.mark_bad(Slot::b);
    CHECK(ukis(*esp) == "osup-1-a.efi osup-2-b+0-1.efi ");
    boot(Slot::a);
    sd.make_first(Slot::b);
    CHECK(sd.slot(Slot::b).state == SlotState::good);
    boot(Slot::b);
  }
  SECTION("disable removes the slot's UKI, leftovers included; the other slot boots") {
    esp->write_atomic("/EFI/Linux/osup-2-b+3.efi.tmp", "half a copy");
    sd.disable(Slot::b);
    CHECK(ukis(*esp) == "osup-1-a.efi ");
    boot(Slot::a);
    CHECK_THROWS_WITH(sd.mark_good(Slot::b), Contains("slot b: it has no UKI in /EFI/Linux"));
  }
  SECTION("a crash between copy and cleanup leaves two UKIs: the newest is the slot's") {
    spec.uki = e.dir / "uki-b";
    const std::string older = "/EFI/Linux/osup-2-b+3.efi";
    const std::string keep = *esp->read(older);
    sd.install(Slot::b, spec);
    esp->write_atomic(older, keep);  // as if the removal had not happened
    CHECK(sd.entry_file(Slot::b) == "osup-3-b+3.efi");
    boot(Slot::b);
    sd.install(Slot::b, spec);  // a new install clears both
    CHECK(ukis(*esp) == "osup-1-a.efi osup-4-b+3.efi ");
  }
  SECTION("bad input") {
    spec.uki = e.dir / "none.efi";
    CHECK_THROWS_WITH(sd.install(Slot::b, spec), Contains("needs the slot's signed UKI"));
    spec.uki = e.dir / "uki-b";
    spec.tries = 0;
    CHECK_THROWS_WITH(sd.install(Slot::b, spec), Contains("at least 1 try"));
  }
  e.fsck();
}

TEST_CASE("publish_slot with a UKI writes no kernel or initrd or Type #1 entry", "[unit]") {
  Esp e("mounted");
  write_random_file(e.dir / "vmlinuz", 4096, 1);
  write_random_file(e.dir / "initrd", 4096, 2);
  write_random_file(e.dir / "uki", 8192, 3);
  const Manifest m = release("2.0");
  const std::string manifest = m.to_json();
  const SlotRelease r{m, manifest, "sig", e.dir / "vmlinuz", e.dir / "initrd", e.dir / "uki"};
  const SlotEspPaths p = slot_esp_paths(Slot::b);
  SystemdBootUki sd(e.esp);

  CHECK(publish_slot(*e.esp, sd, Slot::b, r));
  CHECK_FALSE(e.esp->exists(p.kernel));
  CHECK_FALSE(e.esp->exists(p.initrd));
  CHECK(e.esp->list(kEntriesDir).empty());
  CHECK(e.esp->read(p.manifest) == manifest);
  CHECK(ukis(*e.esp) == "osup-1-b+3.efi ");
  CHECK(e.esp->read("/EFI/Linux/osup-1-b+3.efi") == read_text_file(e.dir / "uki"));
  const SlotBoot b = sd.slot(Slot::b);
  CHECK(b.title == "demo 2.0 (slot b)");
  CHECK(b.version == "2.0");

  retire_slot(*e.esp, sd, Slot::b);
  CHECK(ukis(*e.esp).empty());
  CHECK_FALSE(e.esp->exists(p.manifest));

  // The two kinds of entries never mix on one disk: the Type #1 one would always sort first.
  SystemdBoot type1(e.esp);
  CHECK_THROWS_WITH(publish_slot(*e.esp, type1, Slot::b, r),
                    Contains("boots a signed UKI") && Contains("flash a Secure Boot image"));
  const SlotRelease plain{m, manifest, "sig", e.dir / "vmlinuz", e.dir / "initrd"};
  CHECK_THROWS_WITH(publish_slot(*e.esp, sd, Slot::b, plain),
                    Contains("boots signed UKIs only (Secure Boot)"));
  CHECK_FALSE(e.esp->exists(p.manifest));
}

TEST_CASE("a Type #1 entry dropped on a UKI disk is never the default", "[unit]") {
  // Someone with write access to the ESP adds an entry for a root of his choosing; with
  // sort-key osup it sorts before every UKI. Under Secure Boot its kernel fails to load and
  // systemd-boot 252 then gives up on all entries, so it must not be the one picked.
  Esp e("mounted");
  write_random_file(e.dir / "uki-a", 4096, 1);
  write_random_file(e.dir / "vmlinuz", 4096, 2);
  SystemdBootUki sd(e.esp);
  sd.install(Slot::a, EntrySpec{"demo", "1.0", "", "", "", 3, e.dir / "uki-a"});
  sd.mark_good(Slot::a);
  CHECK_THAT(*e.esp->read(kLoaderConf), Contains("default osup-*.efi\n"));
  e.esp->mkdirs("/evil");
  e.esp->copy_in(e.dir / "vmlinuz", "/evil/vmlinuz");
  e.esp->mkdirs(kEntriesDir);
  e.esp->write_atomic(std::string(kEntriesDir) + "/osup-z.conf",
                      "title evil\nsort-key osup\nversion 99\nlinux /evil/vmlinuz\n"
                      "options roothash=" +
                          std::string(64, 'e') + " osup.slot=a\n");
  CHECK(systemd_boot_pick(*e.esp) == "osup-1-a.efi");
  CHECK(sd.next_boot() == Slot::a);
  // The Type #1 default would have picked it (what a disk built before this change has).
  e.esp->write_atomic(kLoaderConf, loader_conf(false));
  CHECK(systemd_boot_pick(*e.esp) == "osup-z.conf");
}
