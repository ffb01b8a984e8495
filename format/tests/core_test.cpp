#include <catch2/catch.hpp>

#include "base/arch.h"
#include "base/error.h"
#include "base/process.h"
#include "base/size.h"
#include "format/disk_layout.h"
#include "format/sha256.h"
#include "format/uuid.h"

using namespace osup;

TEST_CASE("sizes parse with binary suffixes and reject junk", "[unit]") {
  CHECK(parse_size("2G", "disk.size") == 2 * GiB);
  CHECK(parse_size("768M", "x") == 768 * MiB);
  CHECK(parse_size("4096", "x") == 4096);
  CHECK_THROWS_WITH(parse_size("2Q", "disk.size"),
                    Catch::Contains("disk.size") && Catch::Contains("'2Q'"));
  CHECK_THROWS(parse_size("", "x"));
  CHECK_THROWS(parse_size("99999999999999999999G", "x"));
}

TEST_CASE("sha256 matches the known vector", "[unit]") {
  CHECK(to_hex(sha256(std::string_view("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_THROWS(from_hex("abz", "x"));
}

TEST_CASE("uuids round-trip and derive deterministically", "[unit]") {
  Uuid u = Uuid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
  CHECK(u.str() == "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
  CHECK(Uuid::derived("seed", "esp") == Uuid::derived("seed", "esp"));
  CHECK(Uuid::derived("seed", "esp") != Uuid::derived("seed", "data"));
  CHECK(Uuid::random() != Uuid::random());
  CHECK_THROWS_WITH(Uuid::parse("nope", "disk uuid"), Catch::Contains("disk uuid"));
}

TEST_CASE("DPS pairing takes the two halves of the root hash", "[unit]") {
  Digest h = sha256(std::string_view("x"));
  CHECK(to_hex(layout::root_partition_uuid(h).bytes) == to_hex(std::span(h.data(), 16)));
  CHECK(to_hex(layout::verity_partition_uuid(h).bytes) == to_hex(std::span(h.data() + 16, 16)));
  Arch a{};
  CHECK(layout::arch_of_root_type(layout::root_type(Arch::aarch64), &a));
  CHECK(a == Arch::aarch64);
  CHECK_FALSE(layout::arch_of_root_type(layout::esp_type(), &a));
}

TEST_CASE("missing tools name their Debian package", "[unit]") {
  CHECK(debian_package_for("mkfs.erofs") == "erofs-utils");
  CHECK_THROWS_WITH(require_tool("definitely-not-a-tool"), Catch::Contains("not found"));
  RunResult r = run({"sh", "-c", "echo hi; echo oops >&2; exit 3"});
  CHECK(r.exit_code == 3);
  CHECK(r.out == "hi\n");
  CHECK(r.err == "oops\n");
  CHECK_THROWS_WITH(run_checked({"sh", "-c", "echo bad thing >&2; exit 1"}),
                    Catch::Contains("bad thing"));
  CHECK(run({"cat"}, {.stdin_data = std::string(1 << 20, 'x')}).out.size() == (1u << 20));
}
