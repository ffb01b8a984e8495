// The checker on a real (tiny) osup disk: untouched it boots slot a and passes; a crash
// state whose overlay damages slot a's root or the ESP fails, naming why.
#include "powerloss/crash_check.h"

#include <catch2/catch.hpp>

#include "base/process.h"
#include "base/temp_dir.h"
#include "boot/esp_access.h"
#include "format/gpt.h"
#include "format/signature.h"
#include "powerloss/esp_check.h"
#include "powerloss/rerun.h"
#include "tests/support/test_support.h"
#include "updater/disk.h"

using namespace osup;
using namespace osup::powerloss;

namespace {

std::vector<std::byte> zeros(size_t sectors) { return std::vector<std::byte>(sectors * 512); }

}  // namespace

TEST_CASE("the crash checker passes an untouched disk and fails damaged roots and ESPs",
          "[powerloss]") {
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const test::TestImage img = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  const gpt::Table t = gpt::read(img.disk);
  const std::string log_path = dir / "writes.log";
  {
    WriteLogWriter w(log_path);
    w.flush();                                             // entry 0
    w.write(t.find("root-a")->start / 512 + 8, zeros(8));  // 1: a data block of root a
    w.flush();                                             // 2
    w.write(t.find("esp")->start / 512, zeros(1));         // 3: the FAT boot sector
    w.flush();                                             // 4
  }
  WriteLog log(log_path);
  CrashChecker checker(img.disk, log, sig::TrustStore::load_dir(key.trust_dir), dir / "work");

  const Verdict clean = checker.check(CrashState{StateKind::flush, 1, {}, std::nullopt});
  INFO((clean.failures.empty() ? std::string() : clean.failures.front()));
  CHECK(clean.failures.empty());
  CHECK(clean.boots == layout::Slot::a);

  const Verdict root = checker.check(CrashState{StateKind::flush, 3, {}, std::nullopt});
  REQUIRE(root.failures.size() == 1);
  CHECK_THAT(root.failures[0], Catch::Contains("slot a is bootable but root"));

  const Verdict esp = checker.check(CrashState{StateKind::flush, 5, {}, std::nullopt});
  CHECK_FALSE(esp.boots.has_value());
  CHECK_FALSE(esp.failures.empty());
  CHECK(checker.counts().esp == 2);  // the first two states share the ESP
}

// A Secure Boot disk boots Type #2 entries (signed UKIs in /EFI/Linux): the checker finds
// them, knows their slots, and holds each to the manifest's UKI.
TEST_CASE("the crash checker follows a UKI disk's Type #2 entries", "[powerloss]") {
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  REQUIRE(run({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir / "sb"}).exit_code ==
          0);
  const test::TestImage v1 = test::build_tiny_image(dir / "one", Arch::x86_64, "1.0.0", key, "tiny",
                                                    {}, "out", dir / "sb");
  const test::TestImage v2 = test::build_tiny_image(dir / "two", Arch::x86_64, "2.0.0", key, "tiny",
                                                    {"--no-disk"}, "out", dir / "sb");
  const sig::TrustStore trust = sig::TrustStore::load_dir(key.trust_dir);
  {
    const std::string log_path = dir / "writes.log";
    WriteLogWriter(log_path).flush();
    WriteLog log(log_path);
    CrashChecker checker(v1.disk, log, trust, dir / "work");
    const Verdict clean = checker.check(CrashState{StateKind::flush, 1, {}, std::nullopt});
    INFO((clean.failures.empty() ? std::string() : clean.failures.front()));
    CHECK(clean.failures.empty());
    CHECK(clean.boots == layout::Slot::a);
  }
  const OsupDisk disk = discover_disk(DiscoverOptions{v1.disk, std::nullopt, "/proc/cmdline"});
  const auto base = loader_files(*disk.esp_files);
  auto lower = [](std::string s) {  // mtools shows 8.3 names in upper case
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  EspVerdict v = examine_esp(disk, trust, base);
  CHECK(v.failures.empty());
  REQUIRE(v.bootable.size() == 1);
  CHECK(lower(v.bootable[0].file) == "osup-1-a.efi");
  CHECK(v.manifests.contains(layout::Slot::a));

  // After a switch b's trial UKI is picked; both slots' UKIs match their manifests.
  REQUIRE(run({test::osup_exe(), "--disk", v1.disk, "--keys", key.trust_dir, "--booted", "a",
               "switch", v2.bundle})
              .exit_code == 0);
  v = examine_esp(disk, trust, base);
  CHECK(v.failures.empty());
  REQUIRE(v.picked);
  CHECK(lower(*v.picked) == "osup-2-b+3.efi");
  REQUIRE(v.bootable.size() == 2);
  CHECK(v.bootable[0].slot == layout::Slot::b);
  CHECK(v.slot_errors.empty());
  CHECK(v.manifests.size() == 2);

  // One byte changed in b's UKI: b is bootable, but not what its manifest signed.
  const std::string path = "/EFI/Linux/" + *v.picked;
  std::string uki = *disk.esp_files->read(path);
  uki[uki.size() / 2] ^= 1;
  disk.esp_files->remove(path);
  disk.esp_files->write_atomic(path, uki);
  v = examine_esp(disk, trust, base);
  REQUIRE(v.slot_errors.contains(layout::Slot::b));
  CHECK_THAT(v.slot_errors[layout::Slot::b], Catch::Contains("does not match the manifest"));
  CHECK(v.manifests.contains(layout::Slot::a));
}

TEST_CASE("rerunning the operation on a crash state: a switch finishes and verifies",
          "[powerloss]") {
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const test::TestImage v1 = test::build_tiny_image(dir / "one", Arch::x86_64, "1.0.0", key);
  const test::TestImage v2 = test::build_tiny_image(dir / "two", Arch::x86_64, "2.0.0", key);
  const gpt::Table t = gpt::read(v1.disk);
  const std::string log_path = dir / "writes.log";
  {
    WriteLogWriter w(log_path);
    w.flush();                                      // 0
    w.write(t.find("esp")->start / 512, zeros(1));  // 1: the FAT boot sector
    w.flush();                                      // 2
  }
  WriteLog log(log_path);
  CrashChecker checker(v1.disk, log, sig::TrustStore::load_dir(key.trust_dir), dir / "work");
  const std::optional<Rerun> sw = rerun_for_phase("switch", v2.bundle);
  REQUIRE(sw);
  CHECK_FALSE(rerun_for_phase("first-boot", v2.bundle));
  const std::string image = dir / "rerun.img";
  auto rerun = [&](size_t durable_end) {
    (void)checker.check(CrashState{StateKind::flush, durable_end, {}, std::nullopt}, false);
    checker.write_disk_image(image);
    return rerun_error(image, *sw, test::osup_exe(), key.trust_dir, checker.trust(),
                       checker.base_loader_files());
  };
  // Before the cut's writes: the switch runs again to the end, and b boots, verified.
  CHECK(rerun(1).empty());
  // The rollback that follows a finished switch makes a first again.
  const std::optional<Rerun> back = rerun_for_phase("rollback", "");
  REQUIRE(back);
  checker.write_disk_image(image);
  REQUIRE(run({test::osup_exe(), "--disk", image, "--keys", key.trust_dir, "--booted", "a",
               "switch", v2.bundle})
              .exit_code == 0);
  CHECK(rerun_error(image, *back, test::osup_exe(), key.trust_dir, checker.trust(),
                    checker.base_loader_files())
            .empty());
  // The ESP gone: osup cannot even find it, and says so.
  CHECK_THAT(rerun(3), Catch::Contains("rerun of osup switch failed"));
}

// docs/powerloss.md finding 5, the state `subset @706 +{708,710,711}` of the second
// recording: b's old kernel record on clusters the FAT calls free. On that ESP as the cut
// left it osup refuses (and leaves the ESP as it was); after the boot's fsck.vfat -a the
// rerun switches to b and b's kernel verifies.
TEST_CASE("rerunning a switch on an ESP with a record on freed clusters: refused, then fine",
          "[powerloss]") {
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const test::TestImage v1 = test::build_tiny_image(dir / "one", Arch::x86_64, "1.0.0", key);
  const test::TestImage v2 = test::build_tiny_image(dir / "two", Arch::x86_64, "2.0.0", key);
  const uint64_t esp = gpt::read(v1.disk).find("esp")->start;
  const std::string old_kernel = dir / "old-kernel";
  test::write_random_file(old_kernel, 300ULL * 1024, 3);
  run_checked(
      {"mcopy", "-i", v1.disk + "@@" + std::to_string(esp), old_kernel, "::/osup/b/vmlinuz"});
  test::free_fat_clusters(v1.disk, esp, "/osup/b/vmlinuz");
  const std::string log_path = dir / "writes.log";
  {
    WriteLogWriter w(log_path);
    w.flush();
  }
  WriteLog log(log_path);
  CrashChecker checker(v1.disk, log, sig::TrustStore::load_dir(key.trust_dir), dir / "work");
  const Verdict v = checker.check(CrashState{StateKind::flush, 1, {}, std::nullopt}, false);
  INFO((v.failures.empty() ? std::string() : v.failures.front()));
  CHECK(v.failures.empty());
  CHECK(v.esp_repaired);
  const std::optional<Rerun> sw = rerun_for_phase("switch", v2.bundle);
  REQUIRE(sw);
  const std::string image = dir / "rerun.img";
  bool refused = false;
  checker.write_disk_image(image, false);
  CHECK(rerun_error(image, *sw, test::osup_exe(), key.trust_dir, checker.trust(),
                    checker.base_loader_files(), true, &refused) == "");
  CHECK(refused);
  checker.write_disk_image(image, true);
  CHECK(rerun_error(image, *sw, test::osup_exe(), key.trust_dir, checker.trust(),
                    checker.base_loader_files()) == "");
  // The delta's switch and the boot of a are rerun too; first boot's is the boot itself.
  CHECK(rerun_for_phase("switch-delta", v2.bundle, v2.bundle));
  CHECK_FALSE(rerun_for_phase("switch-delta", v2.bundle));
  CHECK(rerun_for_phase("boot-a", "")->booted == layout::Slot::a);
}
