// osup-build image with the spec's secure_boot, and keygen --secure-boot, as users run
// them: sbverify is the oracle for the signatures, the UKI's sections are read back.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "boot/esp_access.h"
#include "boot/uki.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;

namespace {

RunResult build(const std::string& spec, const test::TestKey& key, const std::string& out,
                std::map<std::string, std::string> env) {
  return run({test::osup_build_exe(), "image", spec, "--key", key.private_key, "--out", out},
             {.env = std::move(env)});
}

void write_spec(const std::string& path, const std::string& body) { std::ofstream(path) << body; }

}  // namespace

TEST_CASE("image with secure_boot carries a signed UKI per slot in bundle and manifest and ESP",
          "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  const RunResult kg = run({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir / "sb",
                            "--name", "cli test"});
  REQUIRE(kg.exit_code == 0);
  CHECK_THAT(kg.out, Catch::Matchers::Contains(dir / "sb/loader/keys/osup/db.auth"));
  const RunResult again =
      run({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir / "sb"});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Matchers::Contains("already exists; refusing to overwrite"));

  for (Arch arch : {Arch::x86_64, Arch::aarch64}) {
    DYNAMIC_SECTION(arch_name(arch)) {
      const std::string a = arch_name(arch), root = dir / ("rootfs-" + a);
      test::make_busybox_rootfs(arch, root, true);
      const std::string common = R"({"name":"r","version":"1.0","arch":")" + a +
                                 R"(","rootfs":{"directory":"rootfs-)" + a +
                                 R"("},"disk":{"size":"320M","esp":"64M","slot":"64M"},
        "boot":{"cmdline":"console=ttyS0"})";
      write_spec(dir / "plain.json", common + "}");
      write_spec(dir / "sb.json",
                 common + R"(,"secure_boot":{"key":"sb/db.key","cert":"sb/db.crt"}})");
      std::map<std::string, std::string> env = {{"SOURCE_DATE_EPOCH", "1700000000"}};
      REQUIRE(build(dir / "plain.json", key, dir / ("plain-" + a), env).exit_code == 0);
      const RunResult r = build(dir / "sb.json", key, dir / ("sb-" + a), env);
      REQUIRE(r.exit_code == 0);
      const std::string stem = "r-1.0-" + a;
      const std::string out = dir / ("sb-" + a + "/" + stem);
      // The signed manifest is the plain build's plus the two UKIs, named by sha256.
      json plain =
          json::parse(read_text_file(dir / ("plain-" + a + "/" + stem + ".manifest.json")));
      json sb = json::parse(read_text_file(out + ".manifest.json"));
      const std::string hash = sb["verity"]["root_hash"];
      REQUIRE(sb["payloads"].size() == plain["payloads"].size() + 2);
      for (const char slot : {'a', 'b'}) {
        const json& p = sb["payloads"][slot == 'a' ? 2 : 3];
        CHECK(p["name"] == std::string("uki-") + slot);
        CHECK(p["sha256"] == to_hex(sha256_file(out + "-slot-" + slot + ".efi")));
      }
      sb["payloads"].erase(2);
      sb["payloads"].erase(2);
      CHECK(sb == plain);
      // The bundle verifies and carries them; the disk's ESP boots slot a's signed UKI with
      // the signed loader, and holds no unsigned kernel or initrd.
      const RunResult inspect =
          run({test::osup_build_exe(), "inspect", out + ".osup", "--pubkey", key.public_key});
      INFO(inspect.out << inspect.err);
      CHECK(inspect.exit_code == 0);
      CHECK_THAT(inspect.out, Catch::Matchers::Contains("uki-b"));
      const gpt::Table t = gpt::read(out + ".img");
      const auto esp = open_image_esp(out + ".img", t.by_number(1)->start);
      CHECK(esp->list("/EFI/Linux") == std::vector<std::string>{"OSUP-1-A.EFI"});
      CHECK(esp->read("/EFI/Linux/osup-1-a.efi") == read_text_file(out + "-slot-a.efi"));
      CHECK(esp->read("/EFI/BOOT/" + efi_fallback_name(arch)) ==
            read_text_file(out + "-systemd-boot" + efi_arch_suffix(arch) + ".efi"));
      CHECK_FALSE(esp->exists("/osup/a/vmlinuz"));
      CHECK_FALSE(esp->exists("/osup/a/initrd"));
      CHECK(esp->list("/loader/entries").empty());
      CHECK(esp->exists("/osup/a/manifest.json"));
      for (const std::string& f : {out + "-slot-a.efi", out + "-slot-b.efi",
                                   out + "-systemd-boot" + efi_arch_suffix(arch) + ".efi"}) {
        INFO(f);
        CHECK_THAT(r.out, Catch::Matchers::Contains(f));
        CHECK(run({"sbverify", "--cert", dir / "sb/db.crt", f}).exit_code == 0);
        CHECK(run({"sbverify", "--cert", dir / "sb/KEK.crt", f}).exit_code != 0);
      }
      for (const char slot : {'a', 'b'}) {
        const std::string uki = read_text_file(out + "-slot-" + slot + ".efi");
        const PeImage pe = read_pe(uki, "uki");
        std::map<std::string, std::string> sec;
        for (const PeSection& s : pe.sections)
          sec[s.name] = uki.substr(s.raw_offset, s.virtual_size);
        CHECK(sec[".cmdline"].starts_with("console=ttyS0 ro roothash=" + hash + " "));
        CHECK(sec[".cmdline"].ends_with(std::string(" osup.slot=") + slot));
        CHECK(sec[".osrel"] == std::string("PRETTY_NAME=\"r 1.0 (slot ") + slot + ")\"\n");
        CHECK(sec[".linux"] == read_text_file(root + "/boot/vmlinuz-0.0.1-test"));
        CHECK(sec[".initrd"] == read_text_file(root + "/boot/initrd.img-0.0.1-test"));
      }
    }
  }
}
