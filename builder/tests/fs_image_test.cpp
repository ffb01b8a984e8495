// Read-only root images: checked and unpacked by the real fsck.erofs / unsquashfs.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "builder/image/filesystem.h"
#include "builder/rootfs/prepare.h"
#include "format/sha256.h"
#include "format/uuid.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using osup::test::TempDir;
namespace b = osup::build;

namespace {

constexpr uint64_t kEpoch = 1700000000;

// A prepared busybox rootfs with an owned file, so ownership must survive packing.
void make_tree(const std::string& dir) {
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, dir);
  std::ofstream(dir + "/etc/owned") << "owned by 1234\n";
  REQUIRE(::chown((dir + "/etc/owned").c_str(), 1234, 4321) == 0);
  fs::permissions(dir + "/etc/owned", fs::perms(0640));
  osup::test::write_random_file(dir + "/usr/lib/blob", 300ull * 1024, 7);
  // File capabilities (ping's cap_net_raw) live in xattrs and must survive packing.
  REQUIRE(::setxattr((dir + "/etc/owned").c_str(), "user.osup", "hello", 5, 0) == 0);
  b::prepare_rootfs(dir, {"demo", "1.0", "", "", kEpoch});
}

std::string file_hash(const std::string& path) { return osup::to_hex(osup::sha256_file(path)); }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const osup::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs fn with PATH pointing at an empty folder, so no tool can be found.
template <class Fn>
void with_empty_path(const std::string& empty_dir, Fn&& fn) {
  const char* path = std::getenv("PATH");
  const std::string old = path ? path : "";
  ::setenv("PATH", empty_dir.c_str(), 1);
  try {
    fn();
  } catch (...) {
    ::setenv("PATH", old.c_str(), 1);
    throw;
  }
  ::setenv("PATH", old.c_str(), 1);
}

}  // namespace

TEST_CASE("fs image: erofs passes fsck.erofs and extracts to the same tree", "[unit]") {
  for (const std::string comp : {"lz4hc", "lz4", "none"}) {
    INFO(comp);
    TempDir t;
    make_tree(t / "root");
    b::FsImageOptions o;
    o.compression = comp;
    o.source_date_epoch = kEpoch;
    o.uuid_seed = "demo-1.0";
    const uint64_t size = b::make_fs_image(t / "root", t / "root.erofs", o);
    CHECK(size == fs::file_size(t / "root.erofs"));
    CHECK(size % 4096 == 0);
    osup::run_checked({"fsck.erofs", "--extract=" + (t / "out"), t / "root.erofs"});
    // diff compares content, symlinks (without following them) and file types.
    auto diff = osup::test::run_cmd({"diff", "-r", "--no-dereference", t / "root", t / "out"});
    CHECK(diff.exit_code == 0);
    CHECK(diff.out == "");
    struct stat st {};
    REQUIRE(::stat((t / "out/etc/owned").c_str(), &st) == 0);
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 4321);
    CHECK((st.st_mode & 0777) == 0640);
    auto inode = osup::run_checked({"dump.erofs", "--path=/etc/owned", t / "root.erofs"});
    CHECK_THAT(inode.out, Catch::Contains("Xattr size: ") && !Catch::Contains("Xattr size: 0"));
    auto sb = osup::run_checked({"dump.erofs", "-s", t / "root.erofs"});
    CHECK_THAT(sb.out, Catch::Contains(osup::Uuid::derived("demo-1.0", "rootfs").str()));
  }
}

TEST_CASE("fs image: same tree and SOURCE_DATE_EPOCH give byte-identical images", "[unit]") {
  for (const std::string type : {"erofs", "squashfs"}) {
    INFO(type);
    TempDir t;
    make_tree(t / "a");
    // A second copy made at another time, in another order: only content may matter.
    osup::run_checked({"cp", "-a", t / "a", t / "b"});
    b::FsImageOptions o;
    o.type = type;
    o.compression = type == "erofs" ? "lz4hc" : "zstd";
    o.source_date_epoch = kEpoch;
    o.uuid_seed = "seed";
    (void)b::make_fs_image(t / "a", t / "a.img", o);
    ::sleep(1);  // a build timestamp leaking into the image would show now
    (void)b::make_fs_image(t / "b", t / "b.img", o);
    CHECK(file_hash(t / "a.img") == file_hash(t / "b.img"));

    std::ofstream(t / "b/etc/owned", std::ios::app) << "changed\n";
    b::prepare_rootfs(t / "b", {"demo", "1.0", "", "", kEpoch});
    (void)b::make_fs_image(t / "b", t / "b2.img", o);
    CHECK(file_hash(t / "a.img") != file_hash(t / "b2.img"));
  }
}

TEST_CASE("fs image: squashfs keeps owners and lists every file", "[unit]") {
  for (const std::string comp : {"zstd", "xz", "gzip", "lz4", "none"}) {
    INFO(comp);
    TempDir t;
    make_tree(t / "root");
    b::FsImageOptions o;
    o.type = "squashfs";
    o.compression = comp;
    const uint64_t size = b::make_fs_image(t / "root", t / "root.sqfs", o);
    CHECK(size % 4096 == 0);
    auto list = osup::run_checked({"unsquashfs", "-lln", t / "root.sqfs"});
    CHECK_THAT(list.out, Catch::Contains("-rw-r----- 1234/4321") &&
                             Catch::Contains("squashfs-root/etc/owned"));
    CHECK_THAT(list.out, Catch::Contains("squashfs-root/bin/sh -> busybox"));
    osup::run_checked({"unsquashfs", "-d", t / "out", t / "root.sqfs"});
    char value[8] = {};
    CHECK(::getxattr((t / "out/etc/owned").c_str(), "user.osup", value, sizeof value) == 5);
    CHECK(std::string(value) == "hello");
    auto stat = osup::run_checked({"unsquashfs", "-s", t / "root.sqfs"});
    if (comp != "none") CHECK_THAT(stat.out, Catch::Contains("Compression " + comp));
  }
}

TEST_CASE("fs image: bad options and missing tools give clear errors", "[unit]") {
  TempDir t;
  fs::create_directories(t / "root/etc");
  fs::create_directories(t / "empty");
  b::FsImageOptions o;
  o.compression = "zstd";
  CHECK_THAT(error_of([&] { (void)b::make_fs_image(t / "root", t / "x.img", o); }),
             Catch::Contains("erofs compression 'zstd' is not supported; use lz4hc, lz4 or none"));
  o = {};
  o.type = "ext4";
  CHECK_THAT(error_of([&] { (void)b::make_fs_image(t / "root", t / "x.img", o); }),
             Catch::Contains("unknown filesystem type 'ext4'"));
  o = {};
  CHECK_THAT(error_of([&] { (void)b::make_fs_image(t / "nope", t / "x.img", o); }),
             Catch::StartsWith("making the erofs image of " + (t / "nope")) &&
                 Catch::Contains("is not a directory"));

  with_empty_path(t / "empty", [&] {
    o = {};
    CHECK(error_of([&] { (void)b::make_fs_image(t / "root", t / "x.img", o); }) ==
          "making the erofs image of " + (t / "root") +
              ": mkfs.erofs not found; install the Debian package erofs-utils "
              "(apt-get install erofs-utils)");
    o.type = "squashfs";
    o.compression = "zstd";
    CHECK_THAT(error_of([&] { (void)b::make_fs_image(t / "root", t / "x.img", o); }),
               Catch::EndsWith("mksquashfs not found; install the Debian package squashfs-tools "
                               "(apt-get install squashfs-tools)"));
  });
}
