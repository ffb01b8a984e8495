// The FAT check osup runs before writing to an ESP, on the crash state of
// docs/powerloss.md finding 5: a directory record still names clusters the FAT calls free.
#include "boot/fat_check.h"

#include <catch2/catch.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "boot/tests/esp_fixture.h"

using namespace osup;
using namespace osup::test;

namespace {

uint32_t le(const std::string& b, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

// The clusters mtools reports for a file: "::/osup/b/vmlinuz <5-44>".
std::pair<uint32_t, uint32_t> clusters_of(const std::string& image, const std::string& path) {
  const std::string out = run_checked({"mshowfat", "-i", image, "::" + path}).out;
  const size_t lt = out.find('<'), dash = out.find('-', lt), gt = out.find('>', lt);
  REQUIRE(gt != std::string::npos);
  return {std::stoul(out.substr(lt + 1, dash - lt - 1)), std::stoul(out.substr(dash + 1))};
}

struct FatImage {
  TempDir dir;
  std::string image = dir / "esp.img", kernel = dir / "vmlinuz";
  FatImage() {
    make_fat_image(image, 0);
    atomic_write_file(kernel, std::string(20000, 'k'));
    run_checked({"mmd", "-i", image, "::/osup", "::/osup/b"});
    run_checked({"mcopy", "-i", image, kernel, "::/osup/b/vmlinuz"});
  }
};

}  // namespace

TEST_CASE("fat check: a consistent FAT has no problems", "[fat]") {
  FatImage f;
  run_checked({"mcopy", "-i", f.image, f.kernel, "::/small"});
  CHECK(fat_inconsistencies({f.image, 0, false}).empty());
  CHECK(run({"fsck.vfat", "-n", f.image}).exit_code == 0);
  CHECK_NOTHROW(require_consistent_fat({f.image, 0, false}, "ESP"));
}

TEST_CASE("fat check: a record on clusters the FAT calls free is found, and fsck.vfat -a fixes it",
          "[fat]") {
  FatImage f;
  const uint32_t first = free_fat_clusters(f.image, 0, "/osup/b/vmlinuz");
  const std::vector<std::string> p = fat_inconsistencies({f.image, 0, false});
  REQUIRE(p.size() == 1);
  CHECK(p[0] ==
        "/osup/b/vmlinuz: cluster " + std::to_string(first) + " of its chain is free in the FAT");
  CHECK(run({"fsck.vfat", "-n", f.image}).exit_code != 0);  // dosfstools agrees
  CHECK_THROWS_WITH(require_consistent_fat({f.image, 0, false}, "ESP in test"),
                    Catch::StartsWith("ESP in test is inconsistent (/osup/b/vmlinuz: cluster") &&
                        Catch::Contains("fsck.vfat -a"));

  SECTION("why writing is refused: a new file gets those clusters") {
    // With FSInfo's next-free hint unknown, the allocator searches from the first cluster
    // (the hint only moves the point where the reuse happens).
    const std::string boot = read_text_file(f.image).substr(0, 512);
    const uint64_t fsinfo = uint64_t{le(boot, 48, 2)} * le(boot, 11, 2);
    UniqueFd fd = open_file(f.image, O_WRONLY);
    const uint32_t unknown = 0xFFFFFFFF;
    pwrite_all(fd.get(), std::as_bytes(std::span(&unknown, 1)), fsinfo + 492, f.image);
    const std::string other = f.dir / "other";
    atomic_write_file(other, std::string(20000, 'n'));
    run_checked({"mcopy", "-i", f.image, other, "::/osup/b/initrd"});
    CHECK(clusters_of(f.image, "/osup/b/initrd").first == first);  // the kernel's now too
  }
  SECTION("fsck.vfat -a repairs it (repair_fat, what live osup runs); then the check passes") {
    CHECK(repair_fat(f.image, {f.image, 0, false}, fs::file_size(f.image)) == 1);
    CHECK(fat_inconsistencies({f.image, 0, false}).empty());
  }
}

TEST_CASE("fat check: a file system at an offset, a cross-link, a short chain", "[fat]") {
  TempDir dir;
  const std::string image = dir / "disk.img", fat = dir / "disk.img.fat", data = dir / "data";
  atomic_write_file(data, std::string(20000, 'd'));
  run_checked({"mkfs.vfat", "-F", "32", "-C", fat, "65536"});
  run_checked({"mcopy", "-i", fat, data, "::/a"});
  run_checked({"mcopy", "-i", fat, data, "::/b"});
  const auto [a_first, a_last] = clusters_of(fat, "/a");
  const auto [b_first, b_last] = clusters_of(fat, "/b");
  // a's chain ends after its first cluster; b's last cluster links on into a's first.
  const std::string boot = read_text_file(fat).substr(0, 512);
  const uint64_t fat0 = uint64_t{le(boot, 14, 2)} * le(boot, 11, 2);
  {
    UniqueFd fd = open_file(fat, O_WRONLY);
    const std::array<uint32_t, 2> next{0x0FFFFFFF, a_first};
    pwrite_all(fd.get(), std::as_bytes(std::span(&next[0], 1)), fat0 + uint64_t{a_first} * 4, fat);
    pwrite_all(fd.get(), std::as_bytes(std::span(&next[1], 1)), fat0 + uint64_t{b_last} * 4, fat);
  }
  const std::string bytes = read_text_file(fat);
  UniqueFd fd = open_file(image, O_WRONLY | O_CREAT | O_TRUNC);
  pwrite_all(fd.get(), std::as_bytes(std::span(bytes.data(), bytes.size())), kMiB, image);
  const std::vector<std::string> p = fat_inconsistencies({image, kMiB, false});
  REQUIRE(p.size() == 2);
  CHECK(p[0] == "/a: 20000 bytes on a chain of 1 clusters");
  CHECK(p[1] == "/b: cluster " + std::to_string(a_first) + " is also another file's (cross-link)");
  CHECK(a_last > a_first);
  CHECK(b_first > a_last);
  CHECK_THROWS_WITH(fat_inconsistencies({image, 0, false}),
                    Catch::Contains("does not hold a FAT file system"));
}
