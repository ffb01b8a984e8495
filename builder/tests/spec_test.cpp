// The image spec: defaults, path resolution, and an error naming the field for each mistake.
#include "builder/spec.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/size.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using osup::build::Spec;

namespace {

// A spec folder with a rootfs directory, a tarball, an overlay and a hook to point at.
struct SpecDir {
  osup::test::TempDir dir;
  SpecDir() {
    fs::create_directories(dir / "rootfs");
    fs::create_directories(dir / "files/etc");
    fs::create_directories(dir / "hooks");
    std::ofstream(dir / "rootfs.tar.zst") << "x";
    std::ofstream(dir / "hooks/10-setup.sh") << "#!/bin/sh\n";
  }
  [[nodiscard]] json minimal() const {
    return {{"name", "demo"}, {"version", "1.0.0"}, {"rootfs", {{"directory", "rootfs"}}}};
  }
  [[nodiscard]] Spec parse(const json& j) const { return osup::build::parse_spec(j, dir.path()); }
  // The error for the minimal spec with KEY set to VALUE, or without KEY.
  [[nodiscard]] std::string with(const std::string& key, const json& value) const {
    json j = minimal();
    j[key] = value;
    return error(j);
  }
  [[nodiscard]] std::string without(const std::string& key) const {
    json j = minimal();
    j.erase(key);
    return error(j);
  }
  [[nodiscard]] std::string error(const json& j) const {
    try {
      (void)parse(j);
    } catch (const osup::Error& e) {
      return e.what();
    }
    FAIL("spec was accepted: " << j.dump());
    return "";
  }
};

}  // namespace

TEST_CASE("spec: minimal spec gets every default", "[unit]") {
  SpecDir d;
  Spec s = d.parse(d.minimal());
  CHECK(s.name == "demo");
  CHECK(s.version == "1.0.0");
  CHECK(s.arch == osup::Arch::x86_64);
  CHECK(s.compatible == "demo-x86_64");
  REQUIRE(std::holds_alternative<osup::build::DirectorySource>(s.rootfs));
  CHECK(std::get<osup::build::DirectorySource>(s.rootfs).path == fs::path(d.dir / "rootfs"));
  CHECK_FALSE(s.overlay);
  CHECK(s.hooks.empty());
  CHECK(s.fs_type == "erofs");
  CHECK(s.compression == "lz4hc");
  CHECK(s.disk_size == 2 * osup::GiB);
  CHECK(s.esp_size == 256 * osup::MiB);
  CHECK(s.slot_size == 768 * osup::MiB);
  CHECK(s.cmdline.empty());
  CHECK(s.tries == 3);
  CHECK(s.bundle_compression == osup::build::BundleCompression::automatic);
  CHECK(s.spec_dir == fs::path(d.dir.path()));
}

TEST_CASE("spec: full spec with every field", "[unit]") {
  SpecDir d;
  json j = {{"name", "demo"},
            {"version", "2.1~rc1+git.3"},
            {"arch", "arm64"},
            {"compatible", "demo-board-v2"},
            {"rootfs", {{"tarball", "rootfs.tar.zst"}}},
            {"overlay", "files/"},
            {"hooks", {"hooks/10-setup.sh"}},
            {"filesystem", {{"type", "squashfs"}, {"compression", "xz"}}},
            {"disk", {{"size", "4G"}, {"esp", "512M"}, {"slot", "1G"}}},
            {"boot", {{"cmdline", "quiet console=ttyAMA0"}, {"tries", 5}}},
            {"bundle", {{"compression", "none"}}}};
  Spec s = d.parse(j);
  CHECK(s.arch == osup::Arch::aarch64);
  CHECK(s.compatible == "demo-board-v2");
  REQUIRE(std::holds_alternative<osup::build::TarballSource>(s.rootfs));
  CHECK(std::get<osup::build::TarballSource>(s.rootfs).path == fs::path(d.dir / "rootfs.tar.zst"));
  REQUIRE(s.overlay);
  CHECK(fs::equivalent(*s.overlay, d.dir / "files"));
  REQUIRE(s.hooks.size() == 1);
  CHECK(s.hooks[0] == fs::path(d.dir / "hooks/10-setup.sh"));
  CHECK(s.fs_type == "squashfs");
  CHECK(s.compression == "xz");
  CHECK(s.disk_size == 4 * osup::GiB);
  CHECK(s.esp_size == 512 * osup::MiB);
  CHECK(s.slot_size == osup::GiB);
  CHECK(s.cmdline == "quiet console=ttyAMA0");
  CHECK(s.tries == 5);
  CHECK(s.bundle_compression == osup::build::BundleCompression::none);
}

TEST_CASE("spec: squashfs defaults to zstd, sizes may be plain byte counts", "[unit]") {
  SpecDir d;
  json j = d.minimal();
  j["filesystem"] = {{"type", "squashfs"}};
  j["disk"] = {{"esp", 128 * osup::MiB}};
  Spec s = d.parse(j);
  CHECK(s.compression == "zstd");
  CHECK(s.esp_size == 128 * osup::MiB);
}

TEST_CASE("spec: debootstrap source with defaults and a cache relative to the spec", "[unit]") {
  SpecDir d;
  json j = d.minimal();
  j["rootfs"] = {
      {"debootstrap", {{"packages", {"systemd", "linux-image-amd64"}}, {"cache", "cache"}}}};
  Spec s = d.parse(j);
  REQUIRE(std::holds_alternative<osup::build::DebootstrapSource>(s.rootfs));
  const auto& db = std::get<osup::build::DebootstrapSource>(s.rootfs);
  CHECK(db.suite == "bookworm");
  CHECK(db.variant == "minbase");
  CHECK(db.mirror == "http://deb.debian.org/debian");
  CHECK(db.components == std::vector<std::string>{"main"});
  CHECK(db.packages == std::vector<std::string>{"systemd", "linux-image-amd64"});
  REQUIRE(db.cache);
  CHECK(*db.cache == fs::path(d.dir / "cache"));
}

TEST_CASE("spec: load_spec resolves paths against the spec's folder and names the file", "[unit]") {
  SpecDir d;
  fs::create_directories(d.dir / "images");
  json j = d.minimal();
  j["rootfs"] = {{"directory", "../rootfs"}};
  std::ofstream(d.dir / "images/x.json") << j.dump();
  Spec s = osup::build::load_spec(d.dir / "images/x.json");
  CHECK(std::get<osup::build::DirectorySource>(s.rootfs).path == fs::path(d.dir / "rootfs"));
  CHECK(s.spec_dir == fs::path(d.dir / "images"));

  j["disk"] = {{"size", "2Q"}};
  std::ofstream(d.dir / "images/x.json") << j.dump();
  CHECK_THROWS_WITH(osup::build::load_spec(d.dir / "images/x.json"),
                    "spec " + (d.dir / "images/x.json") +
                        ": field 'disk.size': size: invalid size '2Q'; use a number with an "
                        "optional K, M, G or T suffix");

  std::ofstream(d.dir / "images/bad.json") << "{\"name\": \"demo\",";
  CHECK_THROWS_WITH(osup::build::load_spec(d.dir / "images/bad.json"),
                    Catch::StartsWith("spec " + (d.dir / "images/bad.json") + ": invalid JSON: ") &&
                        Catch::Contains("line 1"));
  CHECK_THROWS_WITH(osup::build::load_spec(d.dir / "images/none.json"),
                    Catch::Contains("none.json: cannot read it: No such file"));
}

TEST_CASE("spec: every validation error names the field and the problem", "[unit]") {
  SpecDir d;
  auto with = [&](const std::string& key, const json& value) { return d.with(key, value); };
  auto without = [&](const std::string& key) { return d.without(key); };
  using Catch::Contains;
  using Catch::StartsWith;

  CHECK_THAT(with("filesytem", json::object()),
             StartsWith("field 'filesytem': unknown field") && Contains("filesystem"));
  CHECK_THAT(with("disk", {{"sise", "2G"}}), StartsWith("field 'disk.sise': unknown field"));
  CHECK_THAT(without("name"), StartsWith("field 'name': missing"));
  CHECK_THAT(without("version"), StartsWith("field 'version': missing"));
  CHECK_THAT(without("rootfs"), StartsWith("field 'rootfs': missing"));
  CHECK_THAT(with("name", 7), StartsWith("field 'name': expected a string"));
  CHECK_THAT(with("name", "my demo"), StartsWith("field 'name': invalid character ' '"));
  CHECK_THAT(with("name", ""), StartsWith("field 'name': must not be empty"));
  CHECK_THAT(with("version", "v1.0"),
             StartsWith("field 'version': 'v1.0' must start with a digit"));
  CHECK_THAT(with("version", "1.0/2"), StartsWith("field 'version': invalid character '/'"));
  CHECK_THAT(with("compatible", "a b"), StartsWith("field 'compatible': invalid character"));
  CHECK_THAT(with("arch", "mips"), StartsWith("field 'arch': unknown architecture 'mips'"));
  CHECK_THAT(with("rootfs", {{"tarball", "rootfs.tar.zst"}, {"directory", "rootfs"}}),
             StartsWith("field 'rootfs': exactly one of tarball, directory, debootstrap"));
  CHECK_THAT(with("rootfs", json::object()),
             StartsWith("field 'rootfs': exactly one of tarball, directory, debootstrap"));
  CHECK_THAT(with("rootfs", {{"image", "x"}}), StartsWith("field 'rootfs.image': unknown field"));
  CHECK_THAT(with("rootfs", {{"tarball", "missing.tar"}}),
             StartsWith("field 'rootfs.tarball': 'missing.tar' does not exist (looked for " +
                        (d.dir / "missing.tar")));
  CHECK_THAT(with("rootfs", {{"tarball", "rootfs"}}),
             StartsWith("field 'rootfs.tarball': 'rootfs' is not a regular file"));
  CHECK_THAT(with("rootfs", {{"directory", "rootfs.tar.zst"}}),
             StartsWith("field 'rootfs.directory': 'rootfs.tar.zst' is not a directory"));
  CHECK_THAT(with("rootfs", {{"debootstrap", {{"variant", "tiny"}}}}),
             StartsWith("field 'rootfs.debootstrap.variant': unknown variant 'tiny'"));
  CHECK_THAT(with("rootfs", {{"debootstrap", {{"mirror", "deb.debian.org"}}}}),
             StartsWith("field 'rootfs.debootstrap.mirror'"));
  CHECK_THAT(with("rootfs", {{"debootstrap", {{"packages", {"vim;rm"}}}}}),
             StartsWith("field 'rootfs.debootstrap.packages': invalid package name 'vim;rm'"));
  CHECK_THAT(with("rootfs", {{"debootstrap", {{"suit", "sid"}}}}),
             StartsWith("field 'rootfs.debootstrap.suit': unknown field"));
  CHECK_THAT(with("overlay", "nowhere"), StartsWith("field 'overlay': 'nowhere' does not exist"));
  CHECK_THAT(with("hooks", {"hooks/99-missing.sh"}),
             StartsWith("field 'hooks': 'hooks/99-missing.sh' does not exist"));
  CHECK_THAT(with("hooks", "hooks/10-setup.sh"), StartsWith("field 'hooks': expected a list"));
}

TEST_CASE("spec: filesystem, disk, boot and bundle errors name the field", "[unit]") {
  SpecDir d;
  auto with = [&](const std::string& key, const json& value) { return d.with(key, value); };
  using Catch::StartsWith;

  CHECK_THAT(with("filesystem", {{"type", "ext4"}}),
             StartsWith("field 'filesystem.type': unknown type 'ext4'; use erofs or squashfs"));
  CHECK_THAT(with("filesystem", {{"type", "erofs"}, {"compression", "zstd"}}),
             StartsWith("field 'filesystem.compression': 'zstd' is not supported for erofs"));
  CHECK_THAT(with("filesystem", {{"type", "squashfs"}, {"compression", "lz4hc"}}),
             StartsWith("field 'filesystem.compression': 'lz4hc' is not supported for squashfs"));
  CHECK_THAT(with("disk", {{"size", "2Q"}}),
             StartsWith("field 'disk.size': size: invalid size '2Q'"));
  CHECK_THAT(with("disk", {{"slot", "1000000"}}),
             StartsWith("field 'disk.slot': 1000000 bytes is not a multiple of 1M"));
  CHECK_THAT(with("disk", {{"esp", "16M"}}), StartsWith("field 'disk.esp': ESP must be at least"));
  CHECK_THAT(with("boot", {{"tries", 0}}),
             StartsWith("field 'boot.tries': 0 is out of range; use 1..10"));
  CHECK_THAT(with("boot", {{"tries", 11}}), StartsWith("field 'boot.tries': 11 is out of range"));
  CHECK_THAT(with("boot", {{"tries", "3"}}), StartsWith("field 'boot.tries': expected an integer"));
  CHECK_THAT(with("boot", {{"cmdline", "quiet\nroot=/dev/sda"}}),
             StartsWith("field 'boot.cmdline': contains a control character"));
  CHECK_THAT(with("bundle", {{"compression", "xz"}}),
             StartsWith("field 'bundle.compression': 'xz' is not a bundle compression; use auto, "
                        "zstd or none"));
  CHECK_THAT(with("bundle", {{"compression", 3}}),
             StartsWith("field 'bundle.compression': expected a string"));
  CHECK_THAT(with("bundle", {{"level", 19}}), StartsWith("field 'bundle.level': unknown field"));
  CHECK_THAT(with("bundle", "zstd"), StartsWith("field 'bundle': expected an object"));
  CHECK_THAT(d.error(json::array()), StartsWith("expected a JSON object"));
}

TEST_CASE("spec: disk.size must hold what the disk image needs, checked before any build",
          "[unit]") {
  SpecDir d;
  // The disk image's rule (plan_disk): 256 + 2 x (768 + 7) + 64 data + 2 GPT = 1872 MiB.
  CHECK(d.with("disk", {{"size", "1G"}}) ==
        "disk.size 1 GiB is too small: esp 256 MiB + 2 x (slot 768 MiB + verity 7 MiB) + data "
        "≥ 64 MiB needs 1872 MiB; raise disk.size or lower disk.slot");
  CHECK_THAT(
      d.with("disk", {{"size", "1871M"}}),
      Catch::StartsWith("disk.size 1871 MiB is too small") && Catch::Contains("needs 1872 MiB"));
  CHECK(d.parse(d.minimal()).disk_size == 2 * osup::GiB);
  json j = d.minimal();
  j["disk"] = {{"size", "1872M"}};
  CHECK(d.parse(j).disk_size == 1872 * osup::MiB);
  j["disk"] = {{"size", "1872M"}, {"slot", "769M"}};
  CHECK_THAT(d.error(j), Catch::StartsWith("disk.size 1872 MiB is too small: esp 256 MiB + 2 x "
                                           "(slot 769 MiB + verity 7 MiB)"));
}

TEST_CASE("spec: --arch override follows a default compatible string only", "[unit]") {
  SpecDir d;
  Spec s = d.parse(d.minimal());
  osup::build::override_arch(s, osup::Arch::aarch64);
  CHECK(s.arch == osup::Arch::aarch64);
  CHECK(s.compatible == "demo-aarch64");

  json j = d.minimal();
  j["compatible"] = "my-board";
  Spec t = d.parse(j);
  osup::build::override_arch(t, osup::Arch::aarch64);
  CHECK(t.compatible == "my-board");
}

TEST_CASE("spec: secure_boot takes a db key and its certificate, checked up front", "[unit]") {
  SpecDir d;
  (void)osup::build::make_secure_boot_keys(d.dir / "sb", "spec test");
  json j = d.minimal();
  j["secure_boot"] = {{"key", "sb/db.key"}, {"cert", "sb/db.crt"}};
  const Spec s = d.parse(j);
  REQUIRE(s.secure_boot);
  CHECK(s.secure_boot->key == d.dir / "sb/db.key");
  CHECK(s.secure_boot->cert == d.dir / "sb/db.crt");
  CHECK_FALSE(d.parse(d.minimal()).secure_boot);

  using Catch::Matchers::Contains;
  CHECK_THAT(d.with("secure_boot", "sb/db.key"),
             Contains("field 'secure_boot': expected an object"));
  CHECK_THAT(d.with("secure_boot", {{"key", "sb/db.key"}}),
             Contains("field 'secure_boot.cert': missing (it is required)"));
  CHECK_THAT(d.with("secure_boot", {{"key", "sb/db.key"}, {"cert", "sb/db.crt"}, {"pk", "x"}}),
             Contains("field 'secure_boot.pk': unknown field") && Contains("key, cert"));
  CHECK_THAT(d.with("secure_boot", {{"key", "sb/nope.key"}, {"cert", "sb/db.crt"}}),
             Contains("field 'secure_boot.key': 'sb/nope.key' does not exist"));
  CHECK_THAT(d.with("secure_boot", {{"key", "sb/db.key"}, {"cert", "sb/KEK.crt"}}),
             Contains("field 'secure_boot'") && Contains("does not belong to the certificate"));
}

TEST_CASE("spec: secure_boot.enroll names the keys whose db trusts the signing certificate",
          "[unit]") {
  SpecDir d;
  (void)osup::build::make_secure_boot_keys(d.dir / "sb", "spec test");
  (void)osup::build::make_secure_boot_keys(d.dir / "other", "other");
  json j = d.minimal();
  j["secure_boot"] = {{"key", "sb/db.key"}, {"cert", "sb/db.crt"}, {"enroll", {{"keys", "sb"}}}};
  Spec s = d.parse(j);
  REQUIRE(s.secure_boot_enroll);
  CHECK(s.secure_boot_enroll->keys == d.dir / "sb");
  CHECK(s.secure_boot_enroll->mode == "manual");
  j["secure_boot"]["enroll"]["mode"] = "force";
  CHECK(d.parse(j).secure_boot_enroll->mode == "force");
  j["secure_boot"].erase("enroll");
  CHECK_FALSE(d.parse(j).secure_boot_enroll);

  using Catch::Matchers::Contains;
  const auto with_enroll = [&](const json& e) {
    json sb = {{"key", "sb/db.key"}, {"cert", "sb/db.crt"}, {"enroll", e}};
    return d.with("secure_boot", sb);
  };
  CHECK_THAT(with_enroll({{"keys", "sb"}, {"mode", "auto"}}),
             Contains("field 'secure_boot.enroll.mode': 'auto' is not a mode"));
  CHECK_THAT(with_enroll({{"keys", "sb/db.auth"}}),
             Contains("field 'secure_boot.enroll.keys'") && Contains("is not a directory"));
  CHECK_THAT(with_enroll({{"keys", "sb/loader"}}),
             Contains("field 'secure_boot.enroll.keys': has no PK.auth"));
  CHECK_THAT(with_enroll({{"keys", "other"}}), Contains("other/db.crt is not secure_boot.cert"));
  CHECK_THAT(with_enroll({{"keys", "sb"}, {"pk", "x"}}),
             Contains("field 'secure_boot.enroll.pk': unknown field"));
}
