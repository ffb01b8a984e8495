// What osup says when it cannot use what it was given, on real images and bundles made by
// osup-build: one line naming the thing and what to do, a non-zero exit, and no delay.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

#include "base/process.h"
#include "boot/fat_check.h"
#include "format/disk_layout.h"
#include "format/gpt.h"
#include "tests/support/test_support.h"
#include "updater/lock.h"

using namespace osup;
namespace fs = std::filesystem;

namespace {

struct Rig {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);

  RunResult osup(const std::vector<std::string>& args,
                 const std::vector<std::string>& globals = {}) const {
    return test::run_offline_osup(v1.disk, key, "", args, globals);
  }
};

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST_CASE("a bundle signed by another key is refused at once, before the disk is looked at",
          "[integration]") {
  Rig rig;
  test::TestKey other = test::make_key(rig.dir / "other");
  const auto foreign =
      test::build_tiny_image(rig.dir.path(), Arch::x86_64, "2.0.0", other, "tiny", {}, "foreign");
  // Another osup holds the disk: a switch that looked at the disk first would wait for it.
  DiskLock busy(rig.v1.disk, "test", 0);
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = rig.osup({"switch", foreign.bundle}, {"--lock-wait", "20"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err == "osup: bundle signature does not match any trusted key (keys in " +
                     rig.key.trust_dir + "); was it signed with the right key?\n");
  CHECK(seconds < 10);
}

TEST_CASE("osup info says untrusted and fails for a bundle signed by another key",
          "[integration]") {
  Rig rig;
  test::TestKey other = test::make_key(rig.dir / "other");
  const auto foreign =
      test::build_tiny_image(rig.dir.path(), Arch::x86_64, "2.0.0", other, "tiny", {}, "foreign");
  RunResult r = rig.osup({"info", rig.v1.bundle});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("signature: valid\n"));

  r = rig.osup({"info", foreign.bundle});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::Contains("signature: untrusted\n"));
  CHECK(r.err == "osup: signature of " + foreign.bundle +
                     " is untrusted: it does not match any key in " + rig.key.trust_dir +
                     "; was it signed with the right key?\n");
}

TEST_CASE("switch or info on a directory names it and the bundles in it", "[integration]") {
  Rig rig;
  const std::string mnt = rig.dir / "mnt";
  fs::create_directories(mnt);
  for (const std::string& cmd : {"switch", "info"}) {
    RunResult r = rig.osup({cmd, mnt});
    CHECK(r.exit_code == 1);
    CHECK(r.err == "osup: " + mnt + " is a directory, not a bundle; name the .osup file in it\n");
  }
  fs::copy_file(rig.v1.bundle, mnt + "/tiny-1.0.0-x86_64.osup");
  RunResult r = rig.osup({"switch", mnt});
  CHECK(r.exit_code == 1);
  CHECK(lines(r.err) == 1);
  CHECK_THAT(r.err,
             Catch::EndsWith("name the .osup file in it; it holds tiny-1.0.0-x86_64.osup\n"));
}

// docs/powerloss.md finding 5: a cut while `osup switch` retired slot b left b's old kernel
// record on clusters the FAT calls free; a write that allocates there gives them to a new
// file as well, and the finished switch left b's kernel unreadable. osup now refuses before
// its first write, and works once `fsck.vfat -a` (what a boot does) repaired the ESP.
TEST_CASE("on an ESP a power cut left inconsistent osup writes nothing until it is repaired",
          "[integration]") {
  Rig rig;
  const auto v2 =
      test::build_tiny_image(rig.dir.path(), Arch::x86_64, "2.0.0", rig.key, "tiny", {}, "out2");
  const gpt::Partition esp = *gpt::read(rig.v1.disk).find(layout::kEspLabel);
  const std::string leftover = rig.dir / "old-kernel",
                    spec = rig.v1.disk + "@@" + std::to_string(esp.start);
  test::write_random_file(leftover, 300ULL * 1024, 5);
  run_checked({"mcopy", "-i", spec, leftover, "::/osup/b/vmlinuz"});
  test::free_fat_clusters(rig.v1.disk, esp.start, "/osup/b/vmlinuz");
  const auto written = [&] {  // what a switch, rollback or mark-good would change
    std::string h;
    for (const std::string& label :
         {std::string(layout::kEspLabel), layout::root_label(layout::Slot::b),
          layout::verity_label(layout::Slot::b)})
      h += test::partition_sha256(rig.v1.disk, label);
    return h;
  };
  const std::string before = written();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"switch", v2.bundle}, {"rollback"}, {"mark-good"}}) {
    RunResult r = test::run_offline_osup(rig.v1.disk, rig.key, "a", args);
    INFO(args[0] << ": " << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::StartsWith("osup: ESP in " + rig.v1.disk) &&
                          Catch::Contains("is inconsistent (/osup/b/vmlinuz: cluster") &&
                          Catch::Contains("fsck.vfat -a"));
    CHECK(lines(r.err) == 1);
  }
  CHECK(written() == before);

  // The repair a boot does (systemd-fsck before the ESP is mounted), then the switch.
  const std::string alone = rig.dir / "esp.img";
  run_checked({"dd", "if=" + rig.v1.disk, "of=" + alone, "bs=512",
               "skip=" + std::to_string(esp.start / 512), "count=" + std::to_string(esp.size / 512),
               "status=none"});
  (void)run({"fsck.vfat", "-a", alone});
  run_checked({"dd", "if=" + alone, "of=" + rig.v1.disk, "bs=512",
               "seek=" + std::to_string(esp.start / 512), "conv=notrunc", "status=none"});
  RunResult r = test::run_offline_osup(rig.v1.disk, rig.key, "a", {"switch", v2.bundle});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = test::run_offline_osup(rig.v1.disk, rig.key, "a", {"verify", "b"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(fat_inconsistencies({rig.v1.disk, esp.start, false}).empty());
}
