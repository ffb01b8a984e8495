// What osup says when it cannot use what it was given, on real images and bundles made by
// osup-build: one line naming the thing and what to do, a non-zero exit, and no delay.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

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
