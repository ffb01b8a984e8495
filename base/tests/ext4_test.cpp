#include "base/ext4.h"

#include <catch2/catch.hpp>

#include "base/process.h"
#include "tests/support/test_support.h"

using namespace osup;

TEST_CASE("ext4 usage comes from the real mkfs.ext4's superblock, at any offset", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  // 64 MiB of file system at 1 MiB into the file, as a data partition sits in a disk image.
  run_checked({"truncate", "-s", "80M", img});
  run_checked({"mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "offset=1048576", img, "64M"});
  const auto u = read_ext4_usage(img, 1 << 20);
  REQUIRE(u);
  CHECK(u->size == 64ull << 20);
  // dumpe2fs is the oracle for the free count.
  const std::string out = run_checked({"dumpe2fs", "-h", img + "?offset=1048576"}).out;
  INFO(out);
  const auto at = out.find("Free blocks:");
  REQUIRE(at != std::string::npos);
  CHECK(u->free == std::stoull(out.substr(at + 12)) * 4096);
  CHECK(u->free < u->size);

  CHECK_FALSE(read_ext4_usage(img, 0));  // no file system at the start
  CHECK_THROWS(read_ext4_usage(dir / "missing.img", 0));
}
