// osup-build image with the spec's secure_boot, and keygen --secure-boot, as users run
// them: sbverify is the oracle for the signatures, the UKI's sections are read back.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
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
      write_spec(dir / "sb.json", common + R"(,"secure_boot":{"key":"sb/db.key","cert":"sb/db.crt",
        "enroll":{"keys":"sb","mode":"force"}}})");
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
      // systemd-boot 252 enrolls unattended only from /loader/keys/auto.
      for (const std::string var : {"PK", "KEK", "db"})
        CHECK(esp->read("/loader/keys/auto/" + var + ".auth") ==
              read_text_file(dir / ("sb/" + var + ".auth")));
      CHECK_THAT(*esp->read("/loader/loader.conf"),
                 Catch::Matchers::EndsWith("editor no\nsecure-boot-enroll force\n"));
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

TEST_CASE("osup switch and verify and rollback on a Secure Boot disk use its signed UKIs",
          "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  REQUIRE(run({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir / "sb"}).exit_code ==
          0);
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs", true);
  const std::string common = R"({"name":"r","version":"1.0","arch":"x86_64",
    "rootfs":{"directory":"rootfs"},"disk":{"size":"320M","esp":"64M","slot":"64M"})";
  write_spec(dir / "plain.json", common + "}");
  write_spec(dir / "sb.json", common + R"(,"secure_boot":{"key":"sb/db.key","cert":"sb/db.crt"}})");
  REQUIRE(build(dir / "sb.json", key, dir / "v1", {}).exit_code == 0);
  auto bundle = [&](const std::string& spec, const std::string& out) {
    REQUIRE(run({test::osup_build_exe(), "image", spec, "--key", key.private_key, "--out", out,
                 "--version", "2.0", "--no-disk"})
                .exit_code == 0);
    return out + "/r-2.0-x86_64.osup";
  };
  const std::string sb2 = bundle(dir / "sb.json", dir / "v2"),
                    plain2 = bundle(dir / "plain.json", dir / "p2");
  const std::string img = dir / "v1/r-1.0-x86_64.img";
  auto osup = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {test::osup_exe(), "--disk",     img,   "--keys",
                                     key.trust_dir,    "--progress", "none"};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = run(argv);
    INFO(r.out << r.err);
    return r;
  };
  const auto esp = open_image_esp(img, gpt::read(img).by_number(1)->start);
  auto ukis = [&] {  // sorted, lower case (mtools keeps 8.3 names in upper case)
    std::vector<std::string> names = esp->list("/EFI/Linux");
    for (auto& n : names)
      for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto& n : names) out += n + " ";
    return out;
  };

  // A bundle without UKIs is refused before anything is written.
  const RunResult plain = osup({"switch", plain2});
  CHECK(plain.exit_code != 0);
  CHECK_THAT(plain.err, Catch::Matchers::Contains("carries no signed UKIs"));
  CHECK(ukis() == "osup-1-a.efi ");

  REQUIRE(osup({"switch", sb2}).exit_code == 0);
  CHECK(ukis() == "osup-1-a.efi osup-2-b+3.efi ");
  CHECK(esp->read("/EFI/Linux/osup-2-b+3.efi") ==
        read_text_file(dir / "v2/r-2.0-x86_64-slot-b.efi"));
  CHECK_FALSE(esp->exists("/osup/b/vmlinuz"));
  CHECK_FALSE(esp->exists("/osup/b/initrd"));
  CHECK(esp->list("/loader/entries").empty());
  const RunResult st = osup({"status"});
  CHECK_THAT(st.out, Catch::Matchers::Contains("2.0") && Catch::Matchers::Contains("trying"));
  CHECK(osup({"verify", "b"}).exit_code == 0);

  // One byte changed in the trial slot's UKI: verify names slot and file.
  std::string uki = *esp->read("/EFI/Linux/osup-2-b+3.efi");
  uki[uki.size() / 2] ^= 1;
  esp->remove("/EFI/Linux/osup-2-b+3.efi");
  esp->write_atomic("/EFI/Linux/osup-2-b+3.efi", uki);
  const RunResult bad = osup({"verify", "b"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Matchers::Contains("UKI /EFI/Linux/osup-2-b+3.efi of slot b does "
                                                "not match the signed manifest"));

  // Rollback renames slot a to a higher generation; it boots first again.
  REQUIRE(osup({"rollback"}).exit_code == 0);
  CHECK(ukis() == "osup-2-b+3.efi osup-3-a.efi ");
  CHECK(osup({"verify", "a"}).exit_code == 0);
}
