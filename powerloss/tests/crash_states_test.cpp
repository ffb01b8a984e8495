// Crash states of a write log, and their overlays on a base image.
#include "powerloss/crash_states.h"

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <set>

#include "base/fd.h"
#include "base/temp_dir.h"
#include "powerloss/crash_disk.h"

using namespace osup;
using namespace osup::powerloss;

namespace {

std::vector<std::byte> fill(size_t n, uint8_t v) {
  return std::vector<std::byte>(n * 512, static_cast<std::byte>(v));
}

// Interval 1: writes 0,1 then flush 2; interval 2: writes 3..8 then flush 9; interval 3:
// write 10 (8 sectors, 4 KiB) with nothing after it.
void write_fixture(const std::string& path) {
  WriteLogWriter w(path);
  w.write(0, fill(1, 1));
  w.write(1, fill(2, 2));
  w.flush();
  for (uint8_t i = 0; i < 6; ++i) w.write(10 + i, fill(1, static_cast<uint8_t>(0x10 + i)));
  w.flush();
  w.write(20, fill(8, 0x30));
}

size_t count(const std::vector<CrashState>& v, StateKind k) {
  return static_cast<size_t>(
      std::count_if(v.begin(), v.end(), [&](const auto& s) { return s.kind == k; }));
}

}  // namespace

TEST_CASE("crash states: one per flush, subsets within flush barriers, torn writes sector-aligned",
          "[powerloss]") {
  TempDir dir;
  write_fixture(dir.path() + "/log");
  WriteLog log(dir.path() + "/log");
  GenerateOptions o;
  o.subsets = 5;
  o.torn = 3;
  const auto states = generate_states(log, o);
  // The log's start, after each of the two flushes, and the end of the log.
  CHECK(count(states, StateKind::flush) == 4);
  // Interval 1 has 2 writes: only {0} and {1} are neither flush state; interval 2 has 6
  // writes (62 strict subsets), 5 drawn; interval 3 has 1 write, so none.
  CHECK(count(states, StateKind::subset) == 2 + 5);
  CHECK(count(states, StateKind::torn) == 3 + 3);
  std::set<std::pair<size_t, std::vector<size_t>>> distinct;
  for (size_t i = 0; i < states.size(); ++i) {
    const CrashState& s = states[i];
    if (i > 0) CHECK(s.durable_end >= states[i - 1].durable_end);  // replayable in order
    // Every extra write comes after the durable prefix and before the next flush.
    for (size_t e : s.extra) {
      CHECK(e >= s.durable_end);
      for (size_t f = s.durable_end; f <= e; ++f) CHECK_FALSE(log.entries()[f].is_flush());
    }
    if (s.torn) {
      const LogEntry& e = log.entries()[s.torn->entry];
      CHECK((s.torn->sectors >= 1 && s.torn->sectors < e.nr_sectors));
      for (size_t f = s.durable_end; f <= s.torn->entry; ++f)
        CHECK_FALSE(log.entries()[f].is_flush());
    }
    if (s.kind == StateKind::subset) CHECK(distinct.insert({s.durable_end, s.extra}).second);
  }
  // Reproducible: the same seed gives the same states, another seed others.
  const auto again = generate_states(log, o);
  REQUIRE(again.size() == states.size());
  for (size_t i = 0; i < states.size(); ++i) CHECK(again[i].describe() == states[i].describe());
  o.seed = 2;
  const auto other = generate_states(log, o);
  bool differs = false;
  for (size_t i = 0; i < std::min(other.size(), states.size()); ++i)
    differs = differs || other[i].describe() != states[i].describe();
  CHECK(differs);
}

TEST_CASE("small flush intervals get every subset", "[powerloss]") {
  TempDir dir;
  write_fixture(dir.path() + "/log");
  WriteLog log(dir.path() + "/log");
  GenerateOptions o;
  o.subsets = 100;
  o.torn = 0;
  const auto states = generate_states(log, o);
  CHECK(count(states, StateKind::subset) == 2 + 62);
}

TEST_CASE("a crash state's overlay gives the base with exactly its writes", "[powerloss]") {
  TempDir dir;
  write_fixture(dir.path() + "/log");
  WriteLog log(dir.path() + "/log");
  const std::string base = dir.path() + "/base.img";
  {
    UniqueFd fd = open_file(base, O_WRONLY | O_CREAT);
    pwrite_all(fd.get(), fill(64, 0xee), 0, base);
  }
  CrashDisk disk(
      base, log,
      {{"all", 0, 64, dir.path() + "/work.img", 0}, {"tail", 16, 48, dir.path() + "/tail.img", 0}});
  auto byte_at = [&](const std::string& file, uint64_t sector) {
    std::vector<std::byte> b(1);
    UniqueFd fd = open_file(file, O_RDONLY);
    (void)pread_full(fd.get(), b, sector * 512 + 7, file);
    return static_cast<int>(b[0]);
  };
  const RegionKey base_key = disk.key(0);
  // After flush 1, with writes 4 and 6 of interval 2 and the first 3 sectors of write 10.
  disk.select(CrashState{StateKind::torn, 3, {4, 6}, TornWrite{10, 3}});
  disk.materialize(0);
  const std::string work = dir.path() + "/work.img";
  CHECK(byte_at(work, 0) == 1);
  CHECK(byte_at(work, 2) == 2);
  CHECK(byte_at(work, 10) == 0xee);
  CHECK(byte_at(work, 11) == 0x11);
  CHECK(byte_at(work, 12) == 0xee);
  CHECK(byte_at(work, 13) == 0x13);
  CHECK(byte_at(work, 22) == 0x30);
  CHECK(byte_at(work, 23) == 0xee);  // the torn write's 4th sector never arrived
  const RegionKey torn_key = disk.key(0);
  CHECK(torn_key != base_key);
  // Moving on: the overlay file follows, sectors of the previous state are undone.
  disk.select(CrashState{StateKind::subset, 3, {5}, std::nullopt});
  disk.materialize(0);
  CHECK(byte_at(work, 11) == 0xee);
  CHECK(byte_at(work, 12) == 0x12);
  CHECK(byte_at(work, 22) == 0xee);
  // Keys depend on content only: the tail region (sectors 16..63) is the base's again.
  disk.materialize(1);
  CHECK(byte_at(dir.path() + "/tail.img", 22 - 16) == 0xee);
  CHECK(disk.key(1) == RegionKey{0, 0});
  disk.select(CrashState{StateKind::flush, 11, {}, std::nullopt});
  disk.materialize(1);
  CHECK(byte_at(dir.path() + "/tail.img", 23 - 16) == 0x30);
  CHECK(disk.key(1) != RegionKey{0, 0});
}

TEST_CASE("torn writes fall on the edges of the device's atomic unit", "[powerloss]") {
  TempDir dir;
  {
    WriteLogWriter w(dir.path() + "/log");
    w.write(4, fill(20, 1));  // sectors 4..23: 8-sector edges at 8 and 16
    w.write(40, fill(8, 2));  // one whole 8-sector block: cannot tear at that unit
    w.flush();
  }
  WriteLog log(dir.path() + "/log");
  GenerateOptions o;
  o.subsets = 0;
  o.torn = 20;
  o.torn_unit = 8;
  std::set<uint64_t> cuts;
  for (const CrashState& s : generate_states(log, o))
    if (s.torn) {
      CHECK(s.torn->entry == 0);
      cuts.insert(4 + s.torn->sectors);
    }
  CHECK(cuts == std::set<uint64_t>{8, 16});
}
