// `osup-build image` (the factory slot) and `osup switch` (every later one) put a slot on the
// ESP through the same code, boot/publish_slot.h. This checks the outcome with the real tools:
// the ESP of a factory image holding v1 in slot a, and the ESP of a v2 image after
// `osup switch` put v1 into slot a and `osup mark-good` blessed it, hold the same files with
// the same bytes - listed and read with mtools, not through osup's own ESP code.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/fd.h"
#include "format/gpt.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct EspContents {
  std::set<std::string> dirs;
  std::map<std::string, std::string> files;  // path -> bytes
};

// Every directory and file of the disk's ESP (hidden ones too), through mtools.
EspContents read_esp(const std::string& disk) {
  const gpt::Table t = gpt::read(disk);
  const gpt::Partition* esp = t.find("esp");
  REQUIRE(esp);
  const std::string image = disk + "@@" + std::to_string(esp->start);
  RunOptions o;
  o.env["MTOOLS_SKIP_CHECK"] = "1";
  const RunResult list = run({"mdir", "-/", "-a", "-b", "-i", image, "::/"}, o);
  INFO(list.err);
  REQUIRE(list.exit_code == 0);
  EspContents c;
  size_t start = 0;
  while (start < list.out.size()) {
    size_t end = list.out.find('\n', start);
    if (end == std::string::npos) end = list.out.size();
    std::string line = list.out.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    REQUIRE(line.starts_with("::/"));
    std::string path = line.substr(2);
    if (path.ends_with("/")) {
      path.pop_back();
      c.dirs.insert(path);
      continue;
    }
    const RunResult file = run({"mcopy", "-n", "-i", image, "::" + path, "-"}, o);
    INFO(path << ": " << file.err);
    REQUIRE(file.exit_code == 0);
    c.files[path] = file.out;
  }
  return c;
}

// SOURCE_DATE_EPOCH for the builds in one test, as CI sets it; restored afterwards.
struct SourceDateEpoch {
  std::optional<std::string> old;
  explicit SourceDateEpoch(const char* value) {
    if (const char* v = std::getenv("SOURCE_DATE_EPOCH")) old = v;
    ::setenv("SOURCE_DATE_EPOCH", value, 1);
  }
  ~SourceDateEpoch() {
    if (old)
      ::setenv("SOURCE_DATE_EPOCH", old->c_str(), 1);
    else
      ::unsetenv("SOURCE_DATE_EPOCH");
  }
};

}  // namespace

TEST_CASE("osup-build image and osup switch leave byte-identical ESP files for the same slot",
          "[integration]") {
  for (Arch arch : {Arch::x86_64, Arch::aarch64}) {
    DYNAMIC_SECTION(arch_name(arch)) {
      const SourceDateEpoch epoch("1700000000");
      test::TempDir dir;
      const test::TestKey key = test::make_key(dir / "key");
      const test::TestImage v1 = test::build_tiny_image(dir / "one", arch, "1.0.0", key);
      // v2 gets a kernel and initrd of its own, so a switch that left them in place shows.
      const std::string root2 = dir / ("two/rootfs-" + arch_name(arch));
      test::make_busybox_rootfs(arch, root2, true);
      test::write_random_file(root2 + "/boot/vmlinuz-0.0.1-test", 310 * 1024 + 1, 21);
      test::write_random_file(root2 + "/boot/initrd.img-0.0.1-test", 190 * 1024 + 9, 22);
      const test::TestImage v2 = test::build_tiny_image(dir / "two", arch, "2.0.0", key);

      const EspContents factory = read_esp(v1.disk);
      const EspContents before = read_esp(v2.disk);
      // What the comparison must cover is there: the slot's files, its entry, loader.conf and
      // the EFI binaries.
      for (const char* f :
           {"/osup/a/vmlinuz", "/osup/a/initrd", "/osup/a/manifest.json",
            "/osup/a/manifest.json.sig", "/loader/entries/osup-a.conf", "/loader/loader.conf"})
        CHECK(factory.files.count(f) == 1);
      const std::string efi = arch == Arch::x86_64 ? "x64" : "aa64";
      CHECK(factory.files.count("/EFI/BOOT/BOOT" +
                                std::string(arch == Arch::x86_64 ? "X64" : "AA64") + ".EFI") == 1);
      CHECK(factory.files.count("/EFI/systemd/systemd-boot" + efi + ".efi") == 1);
      REQUIRE(factory.files.at("/osup/a/manifest.json") == read_text_file(v1.manifest));
      // v2's disk starts out different where the slot's release lives.
      REQUIRE(before.files.at("/osup/a/manifest.json") == read_text_file(v2.manifest));
      REQUIRE(before.files.at("/osup/a/vmlinuz") != factory.files.at("/osup/a/vmlinuz"));
      REQUIRE(before.files.at("/osup/a/initrd") != factory.files.at("/osup/a/initrd"));

      auto osup = [&](const std::string& booted, std::vector<std::string> args) {
        RunResult r = test::run_offline_osup(v2.disk, key, booted, args);
        INFO("osup " << args[0] << ": " << r.err);
        REQUIRE(r.exit_code == 0);
        return r;
      };
      // With b (empty) treated as running, the switch replaces slot a; then a, booted,
      // proves itself - as the builder leaves the factory slot: good.
      osup("b", {"switch", v1.bundle, "--allow-downgrade"});
      const EspContents switched = read_esp(v2.disk);
      CHECK(switched.files.count("/loader/entries/osup-a+3.conf") == 1);
      // Both slots' directories come with the image: a switch makes none (a cut during a
      // mkdir on FAT is a window the power-loss campaign found, finding 4).
      CHECK(factory.dirs.count("/osup/a") == 1);
      CHECK(factory.dirs.count("/osup/b") == 1);
      CHECK(switched.dirs == factory.dirs);
      osup("a", {"mark-good"});
      const EspContents after = read_esp(v2.disk);

      CHECK(after.dirs == factory.dirs);
      std::set<std::string> names_after, names_factory;
      for (const auto& [path, bytes] : after.files) names_after.insert(path);
      for (const auto& [path, bytes] : factory.files) names_factory.insert(path);
      CHECK(names_after == names_factory);
      for (const auto& [path, bytes] : factory.files) {
        INFO(path << "\nbuilder:\n"
                  << (path.ends_with(".conf") ? bytes : "(binary)") << "\nswitch:\n"
                  << (after.files.count(path) && path.ends_with(".conf") ? after.files.at(path)
                                                                         : "(binary)"));
        CHECK((after.files.count(path) && after.files.at(path) == bytes));
      }

      // And both disks describe slot a the same way to the boot loader and to osup.
      const gpt::Table t1 = gpt::read(v1.disk), t2 = gpt::read(v2.disk);
      CHECK(t2.find("root-a")->uuid == t1.find("root-a")->uuid);
      CHECK(t2.find("root-a-verity")->uuid == t1.find("root-a-verity")->uuid);
      const json s = json::parse(osup("a", {"status", "--json"}).out);
      CHECK(s["slots"]["a"]["state"] == "good");
      CHECK(s["slots"]["a"]["version"] == "1.0.0");
      CHECK(s["next_boot"] == "a");
      osup("a", {"verify", "a"});
    }
  }
}

// With the other slot installed, the switched entry cannot equal the factory one: its
// `version` line is the generation that orders it before the other slot's entry (boot/
// systemd_boot.h), which the factory image's single entry starts at 1. Everything else is
// the same bytes.
TEST_CASE("with the other slot installed, the switched entry differs only in its generation",
          "[integration]") {
  const SourceDateEpoch epoch("1700000000");
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const Arch arch = Arch::x86_64;
  const test::TestImage v1 = test::build_tiny_image(dir / "one", arch, "1.0.0", key);
  const test::TestImage v2 = test::build_tiny_image(dir / "two", arch, "2.0.0", key);
  const test::TestImage v3 = test::build_tiny_image(dir / "two", arch, "3.0.0", key);
  auto osup = [&](const std::string& booted, std::vector<std::string> args) {
    RunResult r = test::run_offline_osup(v2.disk, key, booted, args);
    INFO("osup " << args[0] << ": " << r.err);
    REQUIRE(r.exit_code == 0);
  };
  osup("a", {"switch", v3.bundle});  // b: 3.0.0, generation 2
  osup("b", {"mark-good"});
  osup("b", {"switch", v1.bundle, "--allow-downgrade"});  // a: 1.0.0, generation 3
  osup("a", {"mark-good"});

  const EspContents factory = read_esp(v1.disk);
  const EspContents after = read_esp(v2.disk);
  for (const auto& [path, bytes] : factory.files) {
    INFO(path);
    REQUIRE(after.files.count(path) == 1);
    if (path != "/loader/entries/osup-a.conf") CHECK(after.files.at(path) == bytes);
  }
  const std::string entry_b = after.files.at("/loader/entries/osup-b.conf");
  CHECK_THAT(entry_b, Catch::Contains("\nversion 2\n"));
  const std::string built = factory.files.at("/loader/entries/osup-a.conf");
  std::string switched = after.files.at("/loader/entries/osup-a.conf");
  REQUIRE_THAT(built, Catch::Contains("\nversion 1\n"));
  const size_t at = switched.find("\nversion 3\n");
  INFO("builder:\n" << built << "switch:\n" << switched);
  REQUIRE(at != std::string::npos);
  switched.replace(at, 11, "\nversion 1\n");
  CHECK(switched == built);
}
