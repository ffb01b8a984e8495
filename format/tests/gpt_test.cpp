// GPT through libfdisk, checked against sfdisk as the independent reader.
#include "format/gpt.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "format/disk_layout.h"
#include "tests/support/test_support.h"

using namespace osup;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

nlohmann::json sfdisk_json(const std::string& path) {
  return nlohmann::json::parse(run_checked({"sfdisk", "--json", path}).out)["partitiontable"];
}

std::vector<gpt::NewPartition> sample_partitions() {
  return {
      {"esp", layout::esp_type(), Uuid::derived("t", "esp"), 3 * MiB},
      {"root-a", layout::root_type(Arch::aarch64), Uuid::derived("t", "root"), 1536 * KiB},
      {"data", layout::data_type(), Uuid::derived("t", "data"), 0},
  };
}

}  // namespace

TEST_CASE("gpt create and read round-trip, sfdisk agrees", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  const Uuid disk_uuid = Uuid::derived("t", "disk");
  const auto parts = sample_partitions();
  const gpt::Table t = gpt::create(img, 64 * MiB, disk_uuid, parts);

  CHECK(t.disk_uuid == disk_uuid);
  CHECK(t.sector_size == 512);
  CHECK(t.disk_size == 64 * MiB);
  REQUIRE(t.partitions.size() == 3);
  const gpt::Partition* esp = t.find("esp");
  const gpt::Partition* root = t.find("root-a");
  const gpt::Partition* data = t.by_number(3);
  REQUIRE(esp);
  REQUIRE(root);
  REQUIRE(data);
  CHECK(t.find("nope") == nullptr);
  CHECK(t.by_number(4) == nullptr);
  CHECK(esp->number == 1);
  CHECK(esp->start == 1 * MiB);
  CHECK(esp->size == 3 * MiB);
  CHECK(root->start == 4 * MiB);
  CHECK(root->size == 2 * MiB);  // 1.5 MiB rounded up
  CHECK(root->type == layout::root_type(Arch::aarch64));
  CHECK(root->uuid == Uuid::derived("t", "root"));
  CHECK(data->label == "data");
  CHECK(data->start == 6 * MiB);
  // The rest of the disk in whole MiBs, leaving room for the backup table.
  CHECK(data->size == 64 * MiB - 6 * MiB - 1 * MiB);
  CHECK(data->size % MiB == 0);

  // The file is sized sparsely: only the tables take blocks.
  struct stat st {};
  REQUIRE(::stat(img.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_size) == 64 * MiB);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 1 * MiB);

  const auto j = sfdisk_json(img);
  CHECK(j["label"] == "gpt");
  CHECK(lower(j["id"]) == disk_uuid.str());
  CHECK(j["sectorsize"] == 512);
  REQUIRE(j["partitions"].size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    const auto& p = j["partitions"][i];
    INFO("partition " << i + 1);
    CHECK(lower(p["type"]) == parts[i].type.str());
    CHECK(lower(p["uuid"]) == parts[i].uuid.str());
    CHECK(p["name"] == parts[i].label);
    CHECK(p["start"].get<uint64_t>() % 2048 == 0);
    CHECK(p["start"].get<uint64_t>() * 512 == t.partitions[i].start);
    CHECK(p["size"].get<uint64_t>() * 512 == t.partitions[i].size);
  }
  // sfdisk --verify finds nothing wrong (protective MBR, both headers, CRCs).
  const RunResult v = run({"sfdisk", "--verify", img});
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("No errors detected") != std::string::npos);
}

TEST_CASE("gpt create replaces an existing table and shrinks a larger file", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  (void)gpt::create(img, 128 * MiB, Uuid::derived("a", "disk"), sample_partitions());
  const gpt::Table t =
      gpt::create(img, 32 * MiB, Uuid::derived("b", "disk"),
                  {{"only", layout::data_type(), Uuid::derived("b", "only"), 8 * MiB}});
  CHECK(t.disk_size == 32 * MiB);
  REQUIRE(t.partitions.size() == 1);
  CHECK(t.partitions[0].label == "only");
  CHECK(t.disk_uuid == Uuid::derived("b", "disk"));
  CHECK(sfdisk_json(img)["partitions"].size() == 1);
}

TEST_CASE("gpt create rejects layouts that cannot work", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  auto parts = sample_partitions();
  std::swap(parts[1], parts[2]);  // the rest-of-disk partition is no longer last
  CHECK_THROWS_WITH(gpt::create(img, 64 * MiB, Uuid::random(), parts),
                    "partition 'data' has size 0 (rest of the disk) but is not the last one");

  std::vector<gpt::NewPartition> big = {{"huge", layout::data_type(), Uuid::random(), 64 * MiB}};
  CHECK_THROWS_WITH(gpt::create(img, 64 * MiB, Uuid::random(), big),
                    Catch::Contains("partition 'huge' (64.0 MiB) does not fit on " + img));
}

TEST_CASE("gpt set_partition_uuid changes only that partition", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  (void)gpt::create(img, 64 * MiB, Uuid::derived("t", "disk"), sample_partitions());
  const Uuid fresh = Uuid::parse("01234567-89ab-cdef-0123-456789abcdef");
  gpt::set_partition_uuid(img, 2, fresh);

  const auto j = sfdisk_json(img);
  CHECK(lower(j["partitions"][1]["uuid"]) == fresh.str());
  CHECK(lower(j["partitions"][0]["uuid"]) == Uuid::derived("t", "esp").str());
  CHECK(j["partitions"][1]["name"] == "root-a");
  CHECK(lower(j["partitions"][1]["type"]) == layout::root_type(Arch::aarch64).str());
  const gpt::Table t = gpt::read(img);
  CHECK(t.by_number(2)->uuid == fresh);
  CHECK(t.by_number(2)->start == 4 * MiB);
  CHECK(run({"sfdisk", "--verify", img}).exit_code == 0);

  CHECK_THROWS_WITH(gpt::set_partition_uuid(img, 9, fresh),
                    img + " has no partition 9; is it an osup disk?");
}

TEST_CASE("gpt set_partition_uuid waits for the device lock", "[unit]") {
  test::TempDir dir;
  const std::string img = dir / "disk.img";
  (void)gpt::create(img, 64 * MiB, Uuid::derived("t", "disk"), sample_partitions());
  // Another partitioner (here: a separate open file description) holds the lock.
  UniqueFd holder = open_file(img, O_RDONLY);
  REQUIRE(::flock(holder.get(), LOCK_EX) == 0);
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ::flock(holder.get(), LOCK_UN);
  });
  const auto start = std::chrono::steady_clock::now();
  gpt::set_partition_uuid(img, 1, Uuid::derived("t", "new"));
  const auto waited = std::chrono::steady_clock::now() - start;
  release.join();
  CHECK(waited >= std::chrono::milliseconds(300));
  CHECK(gpt::read(img).by_number(1)->uuid == Uuid::derived("t", "new"));
}

TEST_CASE("gpt read refuses files without a GPT", "[unit]") {
  test::TempDir dir;
  const std::string junk = dir / "junk.img";
  test::write_random_file(junk, 4 * MiB, 7);
  CHECK_THROWS_WITH(gpt::read(junk), junk + " has no GPT partition table");

  // An MBR-partitioned disk is a partition table, but not ours.
  const std::string mbr = dir / "mbr.img";
  test::write_random_file(mbr, 0, 1);
  REQUIRE(::truncate(mbr.c_str(), 16 * MiB) == 0);
  run_checked({"sfdisk", "--quiet", mbr}, {.stdin_data = "label: dos\n,4M,L\n"});
  CHECK_THROWS_WITH(gpt::read(mbr), mbr + " has no GPT partition table");

  CHECK_THROWS_WITH(gpt::read(dir / "missing.img"), Catch::Contains("missing.img"));
  CHECK_THROWS_AS(gpt::read(dir / "missing.img"), Error);
}
