// The dm-log-writes reader, on logs written in the format QEMU's blklogwrites writes.
#include "powerloss/write_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "base/error.h"
#include "base/temp_dir.h"

using namespace osup;
using namespace osup::powerloss;

namespace {

std::vector<std::byte> sectors(size_t n, uint8_t fill, size_t ss = 512) {
  return std::vector<std::byte>(n * ss, static_cast<std::byte>(fill));
}

}  // namespace

TEST_CASE("a write log gives back every write, flush and discard in order, with data",
          "[powerloss]") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  {
    WriteLogWriter w(path);
    w.write(100, sectors(2, 0xaa));
    w.flush();
    w.write(7, sectors(1, 0xbb), kFua);
    w.discard(50, 8);
    w.write(0, sectors(3, 0xcc));  // after the last flush: not in the superblock's count
  }
  WriteLog log(path);
  REQUIRE(log.sector_size() == 512);
  CHECK(log.committed_entries() == 2);
  const auto& e = log.entries();
  REQUIRE(e.size() == 5);
  CHECK((e[0].sector == 100 && e[0].nr_sectors == 2 && e[0].is_write()));
  CHECK((e[1].is_flush() && !e[1].is_write()));
  CHECK((e[2].sector == 7 && (e[2].flags & kFua) != 0 && e[2].is_write()));
  CHECK((e[3].sector == 50 && e[3].nr_sectors == 8 && !e[3].is_write()));
  CHECK((e[4].sector == 0 && e[4].nr_sectors == 3));
  CHECK(log.data(e[0]).size() == 1024);
  CHECK(log.data(e[0])[1023] == std::byte{0xaa});
  CHECK(log.data(e[4])[0] == std::byte{0xcc});
  CHECK(log.data(e[3]).empty());
  // A discard carries no data: the entry after it starts right after its header.
  CHECK(e[4].log_offset == e[3].log_offset + 512);
  CHECK(log.entry_at_log_size(e[2].log_offset) == 2);
  CHECK(log.entry_at_log_size(e[2].log_offset + 1) == 3);
}

TEST_CASE("a write log cut mid-entry ends at the last whole entry", "[powerloss]") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  {
    WriteLogWriter w(path);
    w.write(1, sectors(1, 1));
    w.flush();
    w.write(2, sectors(4, 2));
  }
  REQUIRE(::truncate(path.c_str(), off_t{512} * 6) ==
          0);  // super, 2 entries, 1 flush, half the last
  WriteLog log(path);
  CHECK(log.entries().size() == 2);
}

TEST_CASE("a file that is not a write log, or a truncated one, is refused naming it",
          "[powerloss]") {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  {
    WriteLogWriter w(path);
    w.write(1, sectors(1, 1));
    w.flush();
  }
  REQUIRE(::truncate(path.c_str(), off_t{512} * 2) == 0);  // the superblock counts 2 entries
  CHECK_THROWS_WITH(WriteLog(path), Catch::Contains("truncated") && Catch::Contains(path));
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC);
    REQUIRE(::write(fd, "not a log at all, just text................", 40) == 40);
    ::close(fd);
  }
  CHECK_THROWS_WITH(WriteLog(path), Catch::Contains("no dm-log-writes superblock"));
}
