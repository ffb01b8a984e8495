#include "format/manifest.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "base/error.h"

using namespace osup;
using json = nlohmann::json;

namespace {

Manifest sample() {
  Manifest m;
  m.name = "minimal";
  m.version = "1.2.3";
  m.arch = "x86_64";
  m.compatible = "osup-minimal-x86_64";
  m.filesystem = "erofs";
  m.created = 1700000000;
  m.verity.root_hash = std::string(64, 'a');
  m.verity.salt = "00ff";
  m.verity.uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
  m.verity.data_size = 8192;
  m.verity.hash_size = 4096;
  m.boot.cmdline = "quiet rw=no";
  m.boot.kernel_version = "6.1.0-13-amd64";
  using K = PayloadKind;
  using C = Compression;
  m.payloads = {{K::kernel, "vmlinuz", C::none, 100, std::string(64, '1')},
                {K::initrd, "initrd.img.zst", C::zstd, 200, std::string(64, '2')},
                {K::verity, "root.verity.zst", C::zstd, 4096, std::string(64, '3')},
                {K::root, "root.erofs.zst", C::zstd, 8192, std::string(64, '4')}};
  return m;
}

// Parses the sample after `edit` changed its JSON form.
template <class Fn>
Manifest parse_edited(Fn edit) {
  json j = json::parse(sample().to_json());
  edit(j);
  return Manifest::parse(j.dump());
}

}  // namespace

TEST_CASE("manifest round-trips through JSON", "[unit]") {
  Manifest m = sample();
  Manifest back = Manifest::parse(m.to_json());
  CHECK(back == m);
  REQUIRE(back.find(PayloadKind::root) != nullptr);
  CHECK(back.find(PayloadKind::root)->file == "root.erofs.zst");
  m.payloads.erase(m.payloads.begin() + 1);
  CHECK(m.find(PayloadKind::initrd) == nullptr);
  // The JSON names the kinds and compressions as words.
  const json j = json::parse(back.to_json());
  CHECK(j["payloads"][0]["name"] == "kernel");
  CHECK(j["payloads"][0]["compression"] == "none");
  CHECK(j["payloads"][3]["name"] == "root");
  CHECK(j["payloads"][3]["compression"] == "zstd");
}

TEST_CASE("manifest JSON is deterministic: sorted keys, indent 2, trailing newline", "[unit]") {
  Manifest m = sample();
  std::string a = m.to_json();
  CHECK(a == Manifest::parse(a).to_json());
  CHECK(a.ends_with("}\n"));
  CHECK(a.starts_with("{\n  \"arch\": \"x86_64\",\n  \"boot\": {\n    \"cmdline\""));
  // Key order must not depend on how the input was written.
  json j = json::parse(a);
  std::string reordered = "{\"version\":" + j["version"].dump() + "," + j.dump().substr(1);
  reordered.erase(reordered.rfind(",\"version\""), std::string(",\"version\":\"1.2.3\"").size());
  CHECK(Manifest::parse(reordered).to_json() == a);
}

TEST_CASE("a newer manifest format asks for a newer osup", "[unit]") {
  CHECK_THROWS_WITH(parse_edited([](json& j) {
                      j["format"] = 2;
                      j["something_new"] = true;
                    }),
                    "manifest format 2 is newer than this osup understands; update osup first");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["format"] = 0; }),
                    Catch::Contains("field 'format' must be 1"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["format"] = "1"; }),
                    Catch::Contains("field 'format' must be an integer"));
}

TEST_CASE("manifest fields that are missing or mistyped are named", "[unit]") {
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["root_hash"] = "abc"; }),
                    "manifest: field 'verity.root_hash' must be a 64-character hex string");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"].erase("salt"); }),
                    "manifest: field 'verity.salt' is missing");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j.erase("version"); }),
                    "manifest: field 'version' is missing");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["created"] = -1; }),
                    Catch::Contains("field 'created' must be a non-negative integer"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["created"] = 1.5; }),
                    Catch::Contains("field 'created'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][1]["size"] = "200"; }),
                    Catch::Contains("field 'payloads[1].size' must be a non-negative integer"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["boot"] = "quiet"; }),
                    Catch::Contains("field 'boot' must be a JSON object"));
  CHECK_THROWS_WITH(
      parse_edited([](json& j) { j["payloads"][0]["sha256"] = std::string(64, 'G'); }),
      Catch::Contains("'payloads[0].sha256' must be a 64-character hex string"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["extra"] = 1; }),
                    "manifest: unknown field 'extra'");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["extra"] = 1; }),
                    "manifest: unknown field 'verity.extra'");
  CHECK_THROWS_WITH(Manifest::parse("{\"format\": 1,"),
                    Catch::StartsWith("manifest is not valid JSON"));
  CHECK_THROWS_WITH(Manifest::parse("[1]"), Catch::Contains("must be a JSON object"));
  CHECK_THROWS_WITH(Manifest::parse(""), Catch::StartsWith("manifest is not valid JSON"));
}

TEST_CASE("payloads must be known, unique, plain and complete", "[unit]") {
  CHECK_THROWS_WITH(
      parse_edited([](json& j) { j["payloads"][0]["name"] = "firmware"; }),
      Catch::Contains(
          "'payloads[0].name' must be one of kernel, initrd, uki-a, uki-b, verity, root"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][1]["name"] = "kernel"; }),
                    Catch::Contains("repeats payload 'kernel'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][1]["file"] = "vmlinuz"; }),
                    Catch::Contains("repeats file 'vmlinuz'"));
  for (const char* bad :
       {"../etc/passwd", "a/b", "..", "", "manifest.json", "manifest.json.sig", "x\ny", "a..b"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH(parse_edited([&](json& j) { j["payloads"][3]["file"] = bad; }),
                      Catch::Contains("'payloads[3].file' must be a plain file name"));
  }
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][3]["compression"] = "xz"; }),
                    Catch::Contains("'payloads[3].compression'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][3]["size"] = uint64_t{1} << 41; }),
                    Catch::Contains("'payloads[3].size' is larger than 1 TiB"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"][3]["size"] = 0; }),
                    Catch::Contains("'payloads[3].size' must not be 0"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"].erase(3); }),
                    "manifest: payload 'root' is missing");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"].erase(2); }),
                    "manifest: payload 'verity' is missing");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["payloads"].erase(0); }),
                    Catch::Contains("payload 'kernel' is missing"));
  CHECK_THROWS_WITH(parse_edited([](json& j) {
                      j["boot"]["kernel_version"] = "";
                      j["payloads"].erase(0);
                    }),
                    "manifest: payload 'initrd' needs payload 'kernel'");
  // No kernel at all is fine (a root-only update).
  Manifest m = parse_edited([](json& j) {
    j["boot"]["kernel_version"] = "";
    j["payloads"].erase(0);
    j["payloads"].erase(0);
  });
  CHECK(m.payloads.size() == 2);
}

TEST_CASE("manifest values must be safe", "[unit]") {
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["arch"] = "riscv64"; }),
                    "manifest: field 'arch' must be x86_64 or aarch64");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["arch"] = "amd64"; }),
                    Catch::Contains("field 'arch' must be x86_64 or aarch64"));
  CHECK(parse_edited([](json& j) { j["arch"] = "aarch64"; }).arch == "aarch64");
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["boot"]["cmdline"] = "quiet\ninit=/bin/sh"; }),
                    Catch::Contains("'boot.cmdline'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["boot"]["tries"] = 0; }),
                    Catch::Contains("'boot.tries'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["boot"]["kernel_version"] = "../../x"; }),
                    Catch::Contains("'boot.kernel_version'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["version"] = "1.0 beta"; }),
                    Catch::Contains("'version'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["uuid"] = "nope"; }),
                    Catch::Contains("'verity.uuid'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["data_block_size"] = 3000; }),
                    Catch::Contains("'verity.data_block_size'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["data_size"] = 4097; }),
                    Catch::Contains("'verity.data_size'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["salt"] = "abc"; }),
                    Catch::Contains("'verity.salt'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["verity"]["algorithm"] = "md5"; }),
                    Catch::Contains("'verity.algorithm'"));
  CHECK_THROWS_WITH(parse_edited([](json& j) { j["filesystem"] = "fat"; }),
                    Catch::Contains("'filesystem'"));
  // to_json refuses to produce what parse would reject.
  Manifest m = sample();
  m.payloads[0].file = "../x";
  CHECK_THROWS_WITH(m.to_json(), Catch::Contains("'payloads[0].file'"));
}

TEST_CASE("versions compare numerically, with ~ before anything", "[unit]") {
  const char* ascending[] = {"0.9",   "1.0~rc1", "1.0~rc2", "1.0",     "1.0.0",
                             "1.0.1", "1.0.10",  "1.1",     "1.9",     "1.10",
                             "1.10a", "2.0",     "10.0",    "2024.01", "2024.1.1"};
  for (size_t i = 0; i < std::size(ascending); ++i)
    for (size_t j = 0; j < std::size(ascending); ++j) {
      CAPTURE(ascending[i], ascending[j]);
      int c = compare_versions(ascending[i], ascending[j]);
      if (i < j) CHECK(c < 0);
      if (i == j) CHECK(c == 0);
      if (i > j) CHECK(c > 0);
    }
  CHECK(compare_versions("1.01", "1.1") == 0);
  CHECK(compare_versions("99999999999999999999999", "99999999999999999999998") > 0);
  CHECK(compare_versions("1.0+a", "1.0-a") < 0);  // other characters in ASCII order
  CHECK(compare_versions("1.0a", "1.0+") < 0);    // letters before other characters
}

TEST_CASE("a Secure Boot manifest names one signed UKI per slot, with the kernel", "[unit]") {
  Manifest m = sample();
  CHECK_FALSE(m.has_ukis());
  using K = PayloadKind;
  m.payloads.insert(m.payloads.begin() + 2,
                    {{K::uki_a, "slot-a.efi", Compression::zstd, 300, std::string(64, '5')},
                     {K::uki_b, "slot-b.efi", Compression::zstd, 301, std::string(64, '6')}});
  const Manifest back = Manifest::parse(m.to_json());
  CHECK(back == m);
  CHECK(back.has_ukis());
  REQUIRE(back.find(K::uki_b) != nullptr);
  CHECK(back.find(K::uki_b)->sha256 == std::string(64, '6'));
  const json j = json::parse(m.to_json());
  CHECK(j["payloads"][2]["name"] == "uki-a");
  CHECK(j["payloads"][3]["name"] == "uki-b");

  json one = j;
  one["payloads"].erase(3);
  CHECK_THROWS_WITH(Manifest::parse(one.dump()),
                    Catch::Contains("payloads 'uki-a' and 'uki-b' come together"));
  json no_kernel = j;
  no_kernel["boot"]["kernel_version"] = "";
  no_kernel["payloads"].erase(0);
  no_kernel["payloads"].erase(0);
  CHECK_THROWS_WITH(Manifest::parse(no_kernel.dump()),
                    Catch::Contains("'uki-a' and 'uki-b' need payload 'kernel'"));
  json bad_hash = j;
  bad_hash["payloads"][2]["sha256"] = "xyz";
  CHECK_THROWS_WITH(Manifest::parse(bad_hash.dump()), Catch::Contains("payloads[2].sha256"));
}
