// Flashing to regular files and real (loop) block devices, and every refusal.
#include "builder/flash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "format/uuid.h"
#include "tests/support/test_support.h"

using namespace osup;
using namespace osup::build;

namespace {

const FlashOptions kYes{.yes = true, .progress = ProgressMode::none};

std::vector<std::byte> read_range(const std::string& path, uint64_t offset, uint64_t size) {
  UniqueFd fd = open_file(path, O_RDONLY);
  std::vector<std::byte> buf(size);
  REQUIRE(pread_full(fd.get(), buf, offset, path) == size);
  return buf;
}

void write_range(const std::string& path, uint64_t offset, const std::vector<std::byte>& data) {
  UniqueFd fd = open_file(path, O_WRONLY);
  pwrite_all(fd.get(), data, offset, path);
}

std::vector<std::byte> random_bytes(uint64_t size, uint32_t seed, const std::string& scratch) {
  test::write_random_file(scratch, size, seed);
  return read_range(scratch, 0, size);
}

// Compared by digest so a failure prints two hashes, not megabytes.
bool same_bytes(const std::string& a, const std::string& b, uint64_t offset, uint64_t size) {
  return to_hex(sha256(read_range(a, offset, size))) == to_hex(sha256(read_range(b, offset, size)));
}

bool all_zero(const std::vector<std::byte>& v) {
  return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
}

// A sparse 64 MiB disk image: a GPT plus two islands of data.
std::string make_image(const test::TempDir& dir) {
  std::string img = dir / "disk.img";
  (void)gpt::create(img, 64 * MiB, Uuid::derived("flash", "disk"),
                    {{"one", Uuid::derived("flash", "t"), Uuid::derived("flash", "p1"), 32 * MiB},
                     {"two", Uuid::derived("flash", "t"), Uuid::derived("flash", "p2"), 0}});
  write_range(img, 5 * MiB, random_bytes(1 * MiB, 1, dir / "scratch"));
  write_range(img, 40 * MiB, random_bytes(64 * KiB, 2, dir / "scratch"));
  return img;
}

uint64_t allocated(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// A loop device over a backing file, always detached again.
struct Loop {
  std::string dev;
  explicit Loop(const std::string& file) {
    std::string out = run_checked({"losetup", "-f", "--show", file}).out;
    dev = out.substr(0, out.find('\n'));
  }
  ~Loop() { (void)run({"losetup", "-d", dev}); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
};

bool can_use_loop_devices() { return ::geteuid() == 0 && find_tool("losetup").has_value(); }

// Points stdin at /dev/null for the scope: the confirmation logic must see "not a terminal"
// even when the tests are run by hand.
struct StdinFromDevNull {
  int saved = ::dup(STDIN_FILENO);
  StdinFromDevNull() {
    int fd = ::open("/dev/null", O_RDONLY);
    ::dup2(fd, STDIN_FILENO);
    ::close(fd);
  }
  ~StdinFromDevNull() {
    ::dup2(saved, STDIN_FILENO);
    ::close(saved);
  }
};

}  // namespace

TEST_CASE("flash to a regular file makes a sparse, identical copy", "[unit]") {
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string target = dir / "target.img";
  test::write_random_file(target, 48 * MiB, 9);  // old contents must not survive in holes
  const FlashResult r = flash(img, target, kYes);
  CHECK(sha256_file(target) == sha256_file(img));
  CHECK(std::filesystem::file_size(target) == 64 * MiB);
  CHECK(all_zero(read_range(target, 10 * MiB, 20 * MiB)));
  CHECK(allocated(target) < 8 * MiB);
  CHECK(gpt::read(target).find("two") != nullptr);
  CHECK(r.target_size == 64 * MiB);
  CHECK(describe(r, img, target) == "wrote " + img + " to " + target + " (" +
                                        format_size(r.data_bytes) +
                                        " of data) and read it back: identical");
}

TEST_CASE("flash to a larger regular file keeps its size, as a larger disk would", "[unit]") {
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string target = dir / "target.img";
  test::write_random_file(target, 96 * MiB, 9);
  const FlashResult r = flash(img, target, kYes);
  CHECK(std::filesystem::file_size(target) == 96 * MiB);
  CHECK(same_bytes(target, img, 0, 64 * MiB));
  CHECK(all_zero(read_range(target, 64 * MiB, 32 * MiB)));  // no old bytes after the image
  CHECK(r.image_size == 64 * MiB);
  CHECK(r.target_size == 96 * MiB);
  CHECK_THAT(describe(r, img, target),
             Catch::EndsWith("; " + target +
                             " is 96.0 MiB, the image 64.0 MiB: the data partition grows to "
                             "fill it on first boot"));
}

TEST_CASE("osup-build flash prints its result when stdout is not a terminal", "[unit]") {
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string target = dir / "target.img";
  test::write_random_file(target, 96 * MiB, 9);
  RunResult r = run({test::osup_build_exe(), "flash", img, target, "--yes"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("wrote " + img + " to " + target + " (") &&
                        Catch::EndsWith(" is 96.0 MiB, the image 64.0 MiB: the data partition "
                                        "grows to fill it on first boot\n"));
  CHECK(std::filesystem::file_size(target) == 96 * MiB);
}

TEST_CASE("flash to a loop device writes the data extents and reads them back", "[unit]") {
  if (!can_use_loop_devices()) {
    WARN("skipped: loop devices need root and losetup");
    return;
  }
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string backing = dir / "backing.img";
  test::write_random_file(backing, 96 * MiB, 5);  // a used stick full of old data
  Loop loop(backing);
  flash(img, loop.dev, kYes);

  // The image's data: primary GPT, the two islands, the backup GPT in the last 33 sectors.
  CHECK(same_bytes(loop.dev, img, 0, 34ull * 512));
  CHECK(same_bytes(loop.dev, img, 5 * MiB, 1 * MiB));
  CHECK(same_bytes(loop.dev, img, 40 * MiB, 64 * KiB));
  CHECK(same_bytes(loop.dev, img, 64 * MiB - 33ull * 512, 33ull * 512));
  // Holes in the image are skipped: what was there stays (it is unallocated space).
  CHECK_FALSE(all_zero(read_range(loop.dev, 20 * MiB, 1 * MiB)));
  const gpt::Table t = gpt::read(loop.dev);
  CHECK(t.disk_uuid == Uuid::derived("flash", "disk"));
  REQUIRE(t.by_number(2));
  CHECK(t.by_number(2)->label == "two");
}

TEST_CASE("flash refuses a device smaller than the image", "[unit]") {
  if (!can_use_loop_devices()) {
    WARN("skipped: loop devices need root and losetup");
    return;
  }
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string backing = dir / "small.img";
  { std::ofstream(backing).close(); }
  REQUIRE(::truncate(backing.c_str(), 32 * MiB) == 0);
  Loop loop(backing);
  CHECK_THROWS_WITH(flash(img, loop.dev, kYes),
                    "image is 64.0 MiB but " + loop.dev + " is 32.0 MiB; use a bigger device");
  CHECK(all_zero(read_range(loop.dev, 0, 1 * MiB)));  // nothing written
}

TEST_CASE("flash refuses a mounted device", "[unit]") {
  if (!can_use_loop_devices()) {
    WARN("skipped: loop devices need root and losetup");
    return;
  }
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string backing = dir / "mounted.img";
  { std::ofstream(backing).close(); }
  REQUIRE(::truncate(backing.c_str(), 96 * MiB) == 0);
  Loop loop(backing);
  run_checked({"mkfs.ext4", "-q", loop.dev});
  const std::string mnt = dir / "mnt";
  std::filesystem::create_directory(mnt);
  if (run({"mount", loop.dev, mnt}).exit_code != 0) {
    WARN("skipped: mount is not permitted here");
    return;
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { (void)run({"umount", dir}); }
  } unmount{mnt};
  // The mounted device is named as in /dev (a partition: /dev/loop2p6), not as "7:2".
  CHECK_THROWS_WITH(flash(img, loop.dev, kYes), loop.dev + " is in use: " + loop.dev +
                                                    " is mounted on " + mnt + "; unmount it first");
  // Still a healthy ext4: nothing was written.
  (void)run({"umount", mnt});
  CHECK(run({"e2fsck", "-fn", loop.dev}).exit_code == 0);
}

TEST_CASE("flash refuses the disk of the running system", "[unit]") {
  struct stat root {};
  REQUIRE(::stat("/", &root) == 0);
  const std::string uevent = "/sys/dev/block/" + std::to_string(major(root.st_dev)) + ":" +
                             std::to_string(minor(root.st_dev)) + "/uevent";
  std::ifstream in(uevent);
  std::string line, name;
  while (std::getline(in, line))
    if (line.rfind("DEVNAME=", 0) == 0) name = line.substr(8);
  if (name.empty() || !std::filesystem::exists("/dev/" + name)) {
    WARN("skipped: / is not on a block device with a node in /dev");
    return;
  }
  test::TempDir dir;
  const std::string img = make_image(dir);
  StdinFromDevNull no_tty;
  // Not --yes: even if the check were broken, nothing could be written.
  CHECK_THROWS_WITH(flash(img, "/dev/" + name, {.yes = false, .progress = ProgressMode::none}),
                    "refusing to write /dev/" + name +
                        ": it holds the running system's root filesystem; pick another device");
}

TEST_CASE("flash asks for --yes and rejects bad arguments", "[unit]") {
  test::TempDir dir;
  const std::string img = make_image(dir);
  const std::string target = dir / "target.img";
  test::write_random_file(target, 1 * MiB, 3);
  const Digest before = sha256_file(target);
  {
    StdinFromDevNull no_tty;
    CHECK_THROWS_WITH(flash(img, target, {.yes = false, .progress = ProgressMode::none}),
                      "refusing to overwrite " + target + " without --yes");
  }
  CHECK(sha256_file(target) == before);

  CHECK_THROWS_WITH(flash(img, img, kYes), img + " and " + img + " are the same file");
  CHECK_THROWS_WITH(flash(img, dir.path(), kYes),
                    dir.path() + " is neither a block device nor a regular file");
  CHECK_THROWS_WITH(flash(dir / "missing.img", target, kYes),
                    Catch::Contains("missing.img: No such file or directory"));
  CHECK_THROWS_WITH(flash(img, dir / "nodev", kYes),
                    Catch::Contains("nodev: No such file or directory"));
  CHECK(sha256_file(target) == before);
}
