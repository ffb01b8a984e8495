// Disk image assembly, checked with the real tools: sfdisk, fsck.vfat/mtools, e2fsck.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "boot/esp_access.h"
#include "boot/publish_slot.h"
#include "boot/systemd_boot.h"
#include "builder/image/disk.h"
#include "format/disk_layout.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "format/verity.h"
#include "tests/support/test_support.h"

using namespace osup;
using namespace osup::build;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Copies [offset, offset+size) of image (MiB-aligned) to out, like dd.
void extract(const std::string& image, uint64_t offset, uint64_t size, const std::string& out) {
  run_checked({"dd", "if=" + image, "of=" + out, "bs=1M", "skip=" + std::to_string(offset / MiB),
               "count=" + std::to_string(size / MiB), "status=none"});
}

std::vector<std::byte> read_range(const std::string& path, uint64_t offset, uint64_t size) {
  UniqueFd fd = open_file(path, O_RDONLY);
  std::vector<std::byte> buf(size);
  REQUIRE(pread_full(fd.get(), buf, offset, path) == size);
  return buf;
}

bool all_zero(const std::vector<std::byte>& v) {
  return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
}

RunOptions mtools() {
  RunOptions o;
  o.env["MTOOLS_SKIP_CHECK"] = "1";
  return o;
}

// The partition table, read by sfdisk: DPS types for ARCH, the plan's UUIDs, 1 MiB alignment.
void check_partition_table(const std::string& img, const DiskPlan& plan, Arch arch) {
  const auto j = nlohmann::json::parse(run_checked({"sfdisk", "--json", img}).out);
  const auto& pt = j["partitiontable"];
  CHECK(lower(pt["id"]) == plan.disk_uuid.str());
  REQUIRE(pt["partitions"].size() == 6);
  const std::vector<std::tuple<std::string, Uuid, Uuid>> want = {
      {"esp", layout::esp_type(), plan.esp_uuid},
      {"root-a", layout::root_type(arch), plan.root_a_uuid},
      {"root-a-verity", layout::root_verity_type(arch), plan.verity_a_uuid},
      {"root-b", layout::root_type(arch), plan.root_b_uuid},
      {"root-b-verity", layout::root_verity_type(arch), plan.verity_b_uuid},
      {"data", layout::data_type(), plan.data_uuid},
  };
  for (size_t i = 0; i < 6; ++i) {
    const auto& p = pt["partitions"][i];
    INFO("partition " << i + 1);
    CHECK(p["name"] == std::get<0>(want[i]));
    CHECK(lower(p["type"]) == std::get<1>(want[i]).str());
    CHECK(lower(p["uuid"]) == std::get<2>(want[i]).str());
    CHECK(p["start"].get<uint64_t>() % 2048 == 0);
  }
  CHECK(run({"sfdisk", "--verify", img}).exit_code == 0);  // backup table intact
}

// The ESP region is a valid FAT with our files, byte for byte the ESP image.
void check_esp_region(const std::string& img, const gpt::Partition& esp, const test::TempDir& dir,
                      Arch arch) {
  extract(img, esp.start, esp.size, dir / "esp-out.img");
  CHECK(sha256_file(dir / "esp-out.img") == sha256_file(dir / "esp.img"));
  CHECK(run({"fsck.vfat", "-n", dir / "esp-out.img"}).exit_code == 0);
  const RunResult ls =
      run_checked({"mdir", "-b", "-i", dir / "esp-out.img", "::/EFI/BOOT"}, mtools());
  CHECK(ls.out.find(efi_fallback_name(arch)) != std::string::npos);
  CHECK(run_checked({"mtype", "-i", dir / "esp-out.img", "::/loader/loader.conf"}, mtools()).out ==
        loader_conf());
}

// The data region is a clean ext4 labelled osup-data filling the partition.
void check_data_region(const std::string& img, const gpt::Partition& data,
                       const test::TempDir& dir) {
  extract(img, data.start, data.size, dir / "data-out.img");
  const RunResult fsck = run({"e2fsck", "-fn", dir / "data-out.img"});
  INFO(fsck.out << fsck.err);
  CHECK(fsck.exit_code == 0);
  const std::string sb = run_checked({"dumpe2fs", "-h", dir / "data-out.img"}).out;
  CHECK(sb.find("Filesystem volume name:   osup-data") != std::string::npos);
  CHECK(sb.find("Block count:              " + std::to_string(data.size / 4096)) !=
        std::string::npos);
}

}  // namespace

TEST_CASE("plan_disk sizes, rounding and seeded UUIDs", "[unit]") {
  const DiskPlan p = plan_disk(Arch::x86_64, 2 * GiB, 256 * MiB - 100, 768 * MiB, "seed");
  CHECK(p.disk_size == 2 * GiB);
  CHECK(p.esp_size == 256 * MiB);  // rounded up to whole MiB
  CHECK(p.slot_size == 768 * MiB);
  CHECK(p.verity_size == align_up(verity::hash_device_size(768 * MiB), MiB));
  CHECK(p.verity_size == 7 * MiB);
  CHECK(p.disk_uuid == Uuid::derived("seed", "disk"));
  CHECK(p.root_b_uuid == Uuid::derived("seed", "root-b"));
  const DiskPlan same = plan_disk(Arch::x86_64, 2 * GiB, 256 * MiB, 768 * MiB, "seed");
  CHECK(same.data_uuid == p.data_uuid);
  const std::set<Uuid> all = {p.disk_uuid,     p.esp_uuid,    p.data_uuid,    p.root_a_uuid,
                              p.verity_a_uuid, p.root_b_uuid, p.verity_b_uuid};
  CHECK(all.size() == 7);
  const DiskPlan r1 = plan_disk(Arch::aarch64, 2 * GiB, 256 * MiB, 768 * MiB, "");
  const DiskPlan r2 = plan_disk(Arch::aarch64, 2 * GiB, 256 * MiB, 768 * MiB, "");
  CHECK(r1.disk_uuid != r2.disk_uuid);
  CHECK(r1.arch == Arch::aarch64);
}

TEST_CASE("plan_disk explains a disk that is too small", "[unit]") {
  // 256 + 2 x (768 + 7) + 64 + 2 = 1872 MiB
  CHECK_THROWS_WITH(plan_disk(Arch::x86_64, 1 * GiB, 256 * MiB, 768 * MiB, "s"),
                    "disk.size 1 GiB is too small: esp 256 MiB + 2 x (slot 768 MiB + verity 7 "
                    "MiB) + data ≥ 64 MiB needs 1872 MiB; raise disk.size or lower disk.slot");
  CHECK_NOTHROW(plan_disk(Arch::x86_64, 1872 * MiB, 256 * MiB, 768 * MiB, "s"));
  CHECK_THROWS_WITH(plan_disk(Arch::x86_64, 1871 * MiB, 256 * MiB, 768 * MiB, "s"),
                    Catch::StartsWith("disk.size 1871 MiB is too small"));
  CHECK_THROWS_WITH(plan_disk(Arch::x86_64, 2 * GiB, 16 * MiB, 768 * MiB, "s"),
                    "disk.esp 16 MiB is too small for FAT32 (at least 33 MiB); raise disk.esp");
}

TEST_CASE("write_disk_image lays out a sparse DPS disk for both arches", "[unit]") {
  for (Arch arch : {Arch::x86_64, Arch::aarch64}) {
    DYNAMIC_SECTION(arch_name(arch)) {
      test::TempDir dir;
      test::write_random_file(dir / "boot.efi", 100 * KiB, 1);
      {
        auto esp = create_esp_image(dir / "esp.img", 40 * MiB, "s");
        install_systemd_boot(*esp, dir / "boot.efi", arch);
      }
      // Root: 10 MiB of data followed by a 6 MiB hole; verity: small random file.
      test::write_random_file(dir / "root.img", 10 * MiB, 2);
      REQUIRE(::truncate((dir / "root.img").c_str(), 16 * MiB) == 0);
      test::write_random_file(dir / "verity.img", 100 * KiB, 3);

      const DiskPlan plan = plan_disk(arch, 160 * MiB, 40 * MiB, 24 * MiB, "seed");
      CHECK(plan.verity_size == 1 * MiB);
      const std::string img = dir / "disk.img";
      write_disk_image(img, plan, {dir / "esp.img", dir / "root.img", dir / "verity.img"});
      CHECK_FALSE(std::filesystem::exists(img + ".tmp"));

      check_partition_table(img, plan, arch);

      const gpt::Table t = gpt::read(img);
      const gpt::Partition& esp = *t.by_number(1);
      const gpt::Partition& root_a = *t.by_number(2);
      const gpt::Partition& verity_a = *t.by_number(3);
      const gpt::Partition& root_b = *t.by_number(4);
      const gpt::Partition& data = *t.by_number(6);
      CHECK(root_a.size == 24 * MiB);
      CHECK(verity_a.size == 1 * MiB);
      CHECK(data.size >= 64 * MiB);

      // Slot a holds the images byte for byte; slot b is empty.
      CHECK(read_range(img, root_a.start, 16 * MiB) == read_range(dir / "root.img", 0, 16 * MiB));
      CHECK(all_zero(read_range(img, root_a.start + 16 * MiB, 8 * MiB)));
      CHECK(read_range(img, verity_a.start, 100 * KiB) ==
            read_range(dir / "verity.img", 0, 100 * KiB));
      CHECK(all_zero(read_range(img, root_b.start, root_b.size)));

      check_esp_region(img, esp, dir, arch);
      check_data_region(img, data, dir);

      // Sparse: far fewer blocks than bytes.
      struct stat st {};
      REQUIRE(::stat(img.c_str(), &st) == 0);
      CHECK(static_cast<uint64_t>(st.st_size) == 160 * MiB);
      CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 30 * MiB);
    }
  }
}

TEST_CASE("write_disk_image refuses images that do not fit", "[unit]") {
  test::TempDir dir;
  test::write_random_file(dir / "esp.img", 1 * MiB, 1);
  test::write_random_file(dir / "root.img", 30 * MiB, 2);
  test::write_random_file(dir / "verity.img", 100 * KiB, 3);
  const DiskPlan plan = plan_disk(Arch::x86_64, 160 * MiB, 40 * MiB, 24 * MiB, "seed");
  CHECK_THROWS_WITH(write_disk_image(dir / "disk.img", plan,
                                     {dir / "esp.img", dir / "root.img", dir / "verity.img"}),
                    "root image 30 MiB does not fit slot 24 MiB; raise disk.slot");
  CHECK_THROWS_WITH(write_disk_image(dir / "disk.img", plan,
                                     {dir / "esp.img", dir / "missing.img", dir / "verity.img"}),
                    Catch::StartsWith("root image " + (dir / "missing.img")));
  CHECK_FALSE(std::filesystem::exists(dir / "disk.img"));
  CHECK_FALSE(std::filesystem::exists(dir / "disk.img.tmp"));
}
