#include "base/byte_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "base/fd.h"
#include "tests/support/test_support.h"

using namespace osup;
using Catch::Matchers::Contains;

namespace {

std::string read_n(ByteSource& s, size_t n) {
  std::string out(n, '\0');
  const size_t got = s.read(std::as_writable_bytes(std::span(out.data(), out.size())));
  out.resize(got);
  return out;
}

}  // namespace

TEST_CASE("a file source reads, skips by seeking and reads at offsets", "[unit]") {
  test::TempDir dir;
  const std::string f = dir / "data";
  atomic_write_file(f, "0123456789abcdef");
  auto s = open_file_source(f);
  CHECK(s->name() == f);
  CHECK(s->random_access());
  CHECK(read_n(*s, 4) == "0123");
  CHECK(s->skip(6) == 6);
  CHECK(s->position() == 10);
  CHECK(read_n(*s, 3) == "abc");
  std::string at(2, '\0');
  CHECK(s->read_at(std::as_writable_bytes(std::span(at.data(), 2)), 1) == 2);
  CHECK(at == "12");
  CHECK(read_n(*s, 1) == "d");  // read_at did not move the position
  CHECK(s->skip(100) == 2);     // short at the end, like a read
  CHECK(read_n(*s, 4).empty());
  CHECK_THROWS_WITH(open_file_source(dir / "missing"), Contains("missing"));
}

TEST_CASE("an fd source counts from where the fd stood, as `osup switch - < file` has it",
          "[unit]") {
  test::TempDir dir;
  const std::string f = dir / "data";
  atomic_write_file(f, "headerPAYLOAD");
  UniqueFd fd = open_file(f, O_RDONLY);
  REQUIRE(::lseek(fd.get(), 6, SEEK_SET) == 6);
  auto s = fd_source(fd.get(), "stdin");
  CHECK(s->random_access());
  std::string at(3, '\0');
  CHECK(s->read_at(std::as_writable_bytes(std::span(at.data(), 3)), 0) == 3);
  CHECK(at == "PAY");
  CHECK(read_n(*s, 7) == "PAYLOAD");
}

TEST_CASE("a pipe source streams: skip reads, read_at is refused", "[unit]") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  UniqueFd rd(p[0]), wr(p[1]);
  std::thread writer([&] {
    const std::string data(100000, 'x');
    write_all(wr.get(), std::as_bytes(std::span(data.data(), data.size())), "pipe");
    wr.reset();
  });
  auto s = fd_source(rd.get(), "stdin");
  CHECK_FALSE(s->random_access());
  CHECK(s->skip(99990) == 99990);
  CHECK(read_n(*s, 20) == std::string(10, 'x'));
  CHECK(s->position() == 100000);
  std::byte b[1];
  CHECK_THROWS_WITH(s->read_at(b, 0), Contains("stdin") && Contains("is a stream"));
  writer.join();
}
