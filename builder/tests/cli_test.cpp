// osup-build as users run it, with the real tools as oracles: sfdisk, fsck.erofs,
// fsck.vfat, e2fsck, veritysetup and systemd-dissect.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/size.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Copies one partition of a disk image into its own file, for tools that want a device.
std::string extract_partition(const std::string& disk, const std::string& label,
                              const std::string& out) {
  gpt::Table t = gpt::read(disk);
  const gpt::Partition* p = t.find(label);
  REQUIRE(p);
  run_checked({"dd", "if=" + disk, "of=" + out, "bs=1M", "skip=" + std::to_string(p->start >> 20),
               "count=" + std::to_string(p->size >> 20), "status=none", "conv=sparse"});
  return out;
}

RunResult build(const std::string& spec, const test::TestKey& key, const std::string& out,
                std::vector<std::string> extra = {}, std::map<std::string, std::string> env = {}) {
  std::vector<std::string> argv = {test::osup_build_exe(), "image", spec, "--key",
                                   key.private_key,        "--out", out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run(argv, {.env = std::move(env)});
}

void write_spec(const std::string& path, const std::string& body) { std::ofstream(path) << body; }

// Partition table: labels, DPS types for the arch, 1 MiB alignment, pairing rule; sparse.
void check_partition_table(const std::string& disk, Arch arch, const std::string& hash) {
  json sf = json::parse(run_checked({"sfdisk", "--json", disk}).out);
  auto parts = sf["partitiontable"]["partitions"];
  REQUIRE(parts.size() == 6);
  std::vector<std::string> labels;
  for (auto& p : parts) {
    labels.push_back(p["name"]);
    CHECK(p["start"].get<uint64_t>() % 2048 == 0);
  }
  CHECK(labels == std::vector<std::string>{"esp", "root-a", "root-a-verity", "root-b",
                                           "root-b-verity", "data"});
  const bool x86 = arch == Arch::x86_64;
  CHECK(parts[1]["type"] ==
        (x86 ? "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" : "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"));
  CHECK(parts[2]["type"] ==
        (x86 ? "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5" : "DF3300CE-D69F-4C92-978C-9BFB0F38D820"));
  CHECK(parts[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
  CHECK(parts[5]["type"] == "4D21B016-B534-45C2-A9FB-5C16E091FD2D");
  std::string root_uuid = parts[1]["uuid"], verity_uuid = parts[2]["uuid"];
  root_uuid.erase(std::remove(root_uuid.begin(), root_uuid.end(), '-'), root_uuid.end());
  verity_uuid.erase(std::remove(verity_uuid.begin(), verity_uuid.end(), '-'), verity_uuid.end());
  std::transform(root_uuid.begin(), root_uuid.end(), root_uuid.begin(), ::tolower);
  std::transform(verity_uuid.begin(), verity_uuid.end(), verity_uuid.begin(), ::tolower);
  CHECK(root_uuid + verity_uuid == hash);
  // Sparse output.
  CHECK(fs::file_size(disk) > 4ULL * 1024 * 1024 * 50);
  struct stat st {};
  REQUIRE(::stat(disk.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < fs::file_size(disk) / 4);
}

// Each filesystem passes its own checker; the slot passes veritysetup; the ESP boots the slot.
void check_filesystems(const std::string& disk, Arch arch, const std::string& hash) {
  const bool x86 = arch == Arch::x86_64;
  test::TempDir x;
  CHECK(run({"fsck.erofs", extract_partition(disk, "root-a", x / "root")}).exit_code == 0);
  extract_partition(disk, "root-a-verity", x / "verity");
  RunResult v = run({"veritysetup", "verify", x / "root", x / "verity", hash});
  INFO(v.err);
  CHECK(v.exit_code == 0);
  CHECK(run({"fsck.vfat", "-n", extract_partition(disk, "esp", x / "esp")}).exit_code == 0);
  CHECK(run({"e2fsck", "-fn", extract_partition(disk, "data", x / "data")}).exit_code == 0);
  // systemd-boot from the rootfs, as the firmware's fallback loader for the arch.
  RunResult boot_dir =
      run({"mdir", "-b", "-i", x / "esp", "::/EFI/BOOT"}, {.env = {{"MTOOLS_SKIP_CHECK", "1"}}});
  CHECK_THAT(boot_dir.out, Catch::Contains(x86 ? "BOOTX64.EFI" : "BOOTAA64.EFI"));
  {
    RunResult efi = run({"sh", "-c",
                         "MTOOLS_SKIP_CHECK=1 mtype -i '" + (x / "esp") + "' ::/EFI/BOOT/" +
                             (x86 ? "BOOTX64.EFI" : "BOOTAA64.EFI") + " | head -c 2"});
    CHECK(efi.out == "MZ");  // a PE/COFF EFI application
  }
  // The ESP carries the slot's kernel, initrd, signed manifest and its loader entry.
  RunResult dirl =
      run({"mdir", "-b", "-i", x / "esp", "::/osup/a"}, {.env = {{"MTOOLS_SKIP_CHECK", "1"}}});
  CHECK_THAT(dirl.out, Catch::Contains("vmlinuz") && Catch::Contains("initrd") &&
                           Catch::Contains("manifest.json"));
  RunResult entry = run({"mtype", "-i", x / "esp", "::/loader/entries/osup-a.conf"},
                        {.env = {{"MTOOLS_SKIP_CHECK", "1"}}});
  CHECK_THAT(entry.out, Catch::Contains("roothash=" + hash) && Catch::Contains("osup.slot=a"));
}

// systemd-dissect, told only the root hash, finds the paired slot and its verity.
void check_dissect(const std::string& disk, Arch arch, const std::string& hash) {
  const bool x86 = arch == Arch::x86_64;
  RunResult d = run({"systemd-dissect", "--json=short", "--root-hash=" + hash, disk});
  INFO(d.err);
  REQUIRE(d.exit_code == 0);
  json dj = json::parse(d.out);
  bool found_root = false;
  for (auto& m : dj["mounts"])
    if (m["designator"] == "root") {
      found_root = true;
      CHECK(m["partition_label"] == "root-a");
      CHECK(m["verity"] == "yes");
      CHECK(m["architecture"] == (x86 ? "x86-64" : "arm64"));
    }
  CHECK(found_root);
  CHECK_THAT(d.out, Catch::Contains("IMAGE_VERSION=1.0.0"));
}

// inspect agrees and checks every payload of the bundle.
void check_inspect(const test::TestImage& img, const test::TestKey& key, Arch arch) {
  json ij = json::parse(run_checked({test::osup_build_exe(), "inspect", img.bundle, "--pubkey",
                                     key.public_key, "--json"})
                            .out);
  CHECK(ij["signature"]["status"] == "valid");
  CHECK(ij["payloads_verified"] == true);
  CHECK(ij["manifest"]["arch"] == arch_name(arch));
  json dj2 = json::parse(run_checked({test::osup_build_exe(), "inspect", img.disk, "--pubkey",
                                      key.public_key, "--json"})
                             .out);
  CHECK(dj2["slots"]["a"]["state"] == "good");
  CHECK(dj2["slots"]["a"]["signature"]["status"] == "valid");
  CHECK(dj2["slots"]["b"]["state"] == "empty");
}

}  // namespace

TEST_CASE("osup-build image makes disks the real tools accept, for both arches", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  for (Arch arch : {Arch::x86_64, Arch::aarch64}) {
    DYNAMIC_SECTION(arch_name(arch)) {
      test::TestImage img = test::build_tiny_image(dir.path(), arch, "1.0.0", key);
      json manifest = json::parse(read_text_file(img.manifest));
      const std::string hash = manifest["verity"]["root_hash"];

      check_partition_table(img.disk, arch, hash);
      check_filesystems(img.disk, arch, hash);
      check_dissect(img.disk, arch, hash);
      check_inspect(img, key, arch);
    }
  }
}

TEST_CASE("osup-build is reproducible under SOURCE_DATE_EPOCH", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs", true);
  write_spec(dir / "s.json", R"({"name":"r","version":"1.0","arch":"x86_64",
    "rootfs":{"directory":"rootfs"},"disk":{"size":"320M","esp":"64M","slot":"64M"}})");
  std::map<std::string, std::string> env = {{"SOURCE_DATE_EPOCH", "1700000000"}};
  REQUIRE(build(dir / "s.json", key, dir / "o1", {}, env).exit_code == 0);
  // Touch the source tree: clamped mtimes must hide it.
  run_checked({"touch", dir / "rootfs/etc/os-release"});
  REQUIRE(build(dir / "s.json", key, dir / "o2", {}, env).exit_code == 0);
  for (std::string f : {"r-1.0-x86_64.manifest.json", "r-1.0-x86_64.osup", "r-1.0-x86_64.img"}) {
    INFO(f);
    CHECK(sha256_file(dir / "o1/" + f) == sha256_file(dir / "o2/" + f));
  }
  // A changed file changes the root image.
  std::ofstream(dir / "rootfs/etc/motd") << "hello\n";
  REQUIRE(build(dir / "s.json", key, dir / "o3", {}, env).exit_code == 0);
  CHECK(json::parse(read_text_file(dir / "o1/r-1.0-x86_64.manifest.json"))["verity"]["root_hash"] !=
        json::parse(read_text_file(dir / "o3/r-1.0-x86_64.manifest.json"))["verity"]["root_hash"]);
}

TEST_CASE("osup-build gives one-line errors for bad input", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs");
  auto expect_error = [&](const RunResult& r, const std::string& what) {
    INFO(r.err);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains(what));
    // One error line (warnings about the test rootfs having no kernel may precede it; the
    // builds below pass --progress none, so no stage lines).
    size_t errors = 0, at = 0;
    for (size_t nl; (nl = r.err.find('\n', at)) != std::string::npos; at = nl + 1)
      if (r.err.compare(at, 21, "osup-build: warning: ") != 0) ++errors;
    CHECK(errors == 1);
  };
  const std::string good = R"({"name":"e","version":"1.0","arch":"x86_64",
    "rootfs":{"directory":"rootfs"},"disk":{"size":"320M","esp":"64M","slot":"64M"}})";
  write_spec(dir / "ok.json", good);

  write_spec(dir / "bad.json", R"({"name":"e","version":"1.0","rootfs":{"directory":"rootfs"},
    "disk":{"size":"2Q"}})");
  expect_error(build(dir / "bad.json", key, dir / "o"), "disk.size");
  write_spec(dir / "small.json", R"({"name":"e","version":"1.0","rootfs":{"directory":"rootfs"},
    "disk":{"size":"200M","esp":"64M","slot":"64M"}})");
  RunResult small = build(dir / "small.json", key, dir / "o", {"--progress", "none"});
  expect_error(small, "too small");
  CHECK_THAT(small.err, Catch::Contains("MiB"));
  expect_error(build(dir / "ok.json", key, dir / "o", {"--arch", "aarch64", "--progress", "none"}),
               "aarch64");
  expect_error(run({test::osup_build_exe(), "image", dir / "ok.json", "--key", dir / "nokey.pem",
                    "--out", dir / "o"}),
               "nokey.pem");
  expect_error(run({test::osup_build_exe(), "image", dir / "ok.json", "--out", dir / "o"}),
               "--key is required");
  expect_error(run({test::osup_build_exe(), "inspect", dir / "ok.json"}), "neither");

  // A missing tool names the Debian package to install.
  fs::create_directories(dir / "bin");
  for (const auto& e : fs::directory_iterator("/usr/bin"))
    if (e.path().filename() != "mkfs.erofs")
      fs::create_symlink(e.path(), dir / "bin" / e.path().filename());
  RunResult r =
      build(dir / "ok.json", key, dir / "o", {"--progress", "none"}, {{"PATH", dir / "bin"}});
  expect_error(r, "erofs-utils");
}

TEST_CASE("a rootfs without a kernel still builds, with a warning", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::aarch64, dir / "rootfs");
  write_spec(dir / "s.json", R"({"name":"k","version":"1.0","arch":"aarch64",
    "rootfs":{"directory":"rootfs"},"disk":{"size":"320M","esp":"64M","slot":"64M"}})");
  RunResult r = build(dir / "s.json", key, dir / "o");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::Contains("will not boot"));
  CHECK(fs::exists(dir / "o/k-1.0-aarch64.img"));
  CHECK(fs::exists(dir / "o/k-1.0-aarch64.osup"));
}

TEST_CASE("image --no-disk writes only bundle and manifest and leaves a directory rootfs alone",
          "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs", true);
  const std::string src = dir / "rootfs";
  auto snapshot = [&] {  // what prepare_rootfs changes in its copy, and file identity/mtime
    std::map<std::string, std::string> m;
    for (const auto& e : fs::recursive_directory_iterator(src)) {
      struct stat st {};
      REQUIRE(::lstat(e.path().c_str(), &st) == 0);
      std::string v = std::to_string(st.st_mode) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                      std::to_string(st.st_mtim.tv_nsec);
      if (S_ISREG(st.st_mode)) v += " " + to_hex(sha256_file(e.path().string()));
      m[e.path().lexically_relative(src).string()] = v;
    }
    return m;
  };
  const auto before = snapshot();
  write_spec(dir / "s.json", R"({"name":"nd","version":"1.0","rootfs":{"directory":"rootfs"},
    "disk":{"size":"320M","esp":"64M","slot":"64M"}})");
  RunResult r = build(dir / "s.json", key, dir / "o", {"--no-disk"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out ==
        dir / "o/nd-1.0-x86_64.osup" + "\n" + dir / "o/nd-1.0-x86_64.manifest.json" + "\n");
  // stderr is a pipe here, as in a CI log: still one line per stage, no progress bars.
  CHECK_THAT(r.err,
             Catch::Contains("osup-build: populating rootfs for x86_64\n") &&
                 Catch::Contains("osup-build: packing root filesystem (erofs, lz4hc)\n") &&
                 Catch::Contains("osup-build: computing dm-verity hash tree\n") &&
                 Catch::Contains("osup-build: writing bundle " + dir / "o/nd-1.0-x86_64.osup\n"));
  CHECK(r.err.find('\r') == std::string::npos);
  CHECK_FALSE(fs::exists(dir / "o/nd-1.0-x86_64.img"));
  CHECK_FALSE(fs::exists(dir / "o/.work-nd-1.0-x86_64"));
  CHECK(snapshot() == before);
  CHECK(read_text_file(src + "/etc/machine-id") == "0123456789abcdef0123456789abcdef\n");
  RunResult i = run({test::osup_build_exe(), "inspect", dir / "o/nd-1.0-x86_64.osup", "--pubkey",
                     key.public_key, "--json"});
  INFO(i.err);
  CHECK(i.exit_code == 0);
  CHECK(json::parse(i.out)["signature"]["status"] == "valid");

  // Another key: shown as "untrusted" (the word osup info uses), and the command fails.
  test::TestKey other = test::make_key(dir / "other");
  for (const std::string& format : {"--json", "--text"}) {
    std::vector<std::string> argv = {test::osup_build_exe(), "inspect",
                                     dir / "o/nd-1.0-x86_64.osup", "--pubkey", other.public_key};
    if (format == "--json") argv.push_back(format);
    i = run(argv);
    INFO(i.out << i.err);
    CHECK(i.exit_code == 1);
    if (format == "--json")
      CHECK(json::parse(i.out)["signature"]["status"] == "untrusted");
    else
      CHECK_THAT(i.out, Catch::Contains("  signature: untrusted\n"));
    CHECK(i.err == "osup-build: signature of " + dir / "o/nd-1.0-x86_64.osup" +
                       " is untrusted: it does not verify with " + other.public_key +
                       "; check that this is the key it was signed with\n");
  }
}

TEST_CASE("image --incremental reuses the tree the hooks built, --overlay comes on top",
          "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs", false);
  fs::create_directories(dir / "extra/etc");
  std::ofstream(dir / "extra/etc/site.conf") << "site\n";
  // The hook leaves a random stamp: the same stamp in a later build means the hook was skipped.
  auto write_hook = [&](const std::string& tag) {
    std::ofstream(dir / "stamp-hook")
        << "#!/bin/sh\n# " << tag << "\ncat /proc/sys/kernel/random/uuid > /etc/hook-stamp\n";
  };
  write_hook("one");
  write_spec(dir / "s.json", R"({"name":"inc","version":"1.0","rootfs":{"directory":"rootfs"},
    "hooks":["stamp-hook"],"disk":{"size":"320M","esp":"64M","slot":"64M"}})");
  const std::map<std::string, std::string> env = {{"OSUP_CACHE_DIR", dir / "cache"}};
  // --keep-workdir leaves the final tree in OUT/.work-<stem>/rootfs to look at.
  auto build_version = [&](const std::string& version, std::vector<std::string> extra) {
    extra.insert(extra.end(), {"--version", version, "--no-disk", "--keep-workdir"});
    RunResult r = build(dir / "s.json", key, dir / "o", extra, env);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::string tree = dir / ("o/.work-inc-" + version + "-x86_64/rootfs");
    CHECK(read_text_file(tree + "/etc/os-release").find("IMAGE_VERSION=\"" + version + "\"") !=
          std::string::npos);
    return tree;
  };
  auto cache_entries = [&] {
    std::vector<std::string> v;
    if (fs::exists(dir / "cache/rootfs"))
      for (const auto& e : fs::directory_iterator(dir / "cache/rootfs"))
        v.push_back(e.path().filename().string());
    return v;
  };

  const std::string t1 = build_version("1.0", {"--incremental"});
  const std::string stamp = read_text_file(t1 + "/etc/hook-stamp");
  REQUIRE(cache_entries().size() == 1);
  CHECK(cache_entries()[0].rfind("inc-x86_64-", 0) == 0);

  // A new version and an --overlay: the cached tree is used, the overlay lands on top.
  const std::string t2 = build_version("2.0", {"--incremental", "--overlay", dir / "extra"});
  CHECK(read_text_file(t2 + "/etc/hook-stamp") == stamp);
  CHECK(read_text_file(t2 + "/etc/site.conf") == "site\n");
  CHECK_FALSE(fs::exists(t1 + "/etc/site.conf"));

  // Without --incremental the hooks run again.
  const std::string t3 = build_version("3.0", {});
  CHECK(read_text_file(t3 + "/etc/hook-stamp") != stamp);

  // A changed hook changes the key: the hook runs, and the stale tree is dropped.
  const std::string old_entry = cache_entries()[0];
  write_hook("two");
  const std::string t4 = build_version("4.0", {"--incremental"});
  CHECK(read_text_file(t4 + "/etc/hook-stamp") != stamp);
  REQUIRE(cache_entries().size() == 1);
  CHECK(cache_entries()[0] != old_entry);

  RunResult bad = build(dir / "s.json", key, dir / "o", {"--overlay", dir / "missing"}, env);
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--overlay " + (dir / "missing") + " is not a directory") !=
        std::string::npos);
  CHECK(std::count(bad.err.begin(), bad.err.end(), '\n') == 1);
}

TEST_CASE("image --bundle-compression and the spec's bundle.compression choose the payloads' form",
          "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::make_busybox_rootfs(Arch::x86_64, dir / "rootfs", true);
  // Compression of the verity and root payloads in a build's manifest, and the bundle's entries.
  auto payloads = [&](const std::string& out) {
    std::map<std::string, std::string> m;
    const json manifest = json::parse(read_text_file(out + "/b-1.0-x86_64.manifest.json"));
    for (const json& p : manifest["payloads"])
      if (p["name"] == "verity" || p["name"] == "root")
        m[p["name"]] = p["compression"].get<std::string>() + " " + p["file"].get<std::string>();
    RunResult i = run({test::osup_build_exe(), "inspect", out + "/b-1.0-x86_64.osup", "--pubkey",
                       key.public_key});
    INFO(i.out << i.err);
    CHECK(i.exit_code == 0);  // signature and every payload's sha256 check out
    return m;
  };
  write_spec(dir / "none.json", R"({"name":"b","version":"1.0","rootfs":{"directory":"rootfs"},
    "disk":{"size":"320M","esp":"64M","slot":"64M"},"bundle":{"compression":"none"}})");
  RunResult r = build(dir / "none.json", key, dir / "o-none", {"--no-disk", "--progress", "none"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());  // --progress none: not even the stage lines
  CHECK(payloads(dir / "o-none") ==
        std::map<std::string, std::string>{{"verity", "none root.verity"},
                                           {"root", "none root.erofs"}});
  // The option wins over the spec.
  r = build(dir / "none.json", key, dir / "o-zstd", {"--no-disk", "--bundle-compression", "zstd"});
  REQUIRE(r.exit_code == 0);
  CHECK(payloads(dir / "o-zstd") ==
        std::map<std::string, std::string>{{"verity", "zstd root.verity.zst"},
                                           {"root", "zstd root.erofs.zst"}});
  {  // inspect shows a .zst payload's size in the bundle and unpacked
    const json ij = json::parse(
        run_checked({test::osup_build_exe(), "inspect", dir / "o-zstd/b-1.0-x86_64.osup", "--json"})
            .out);
    json root;
    for (const json& p : ij["manifest"]["payloads"])
      if (p["name"] == "root") root = p;
    REQUIRE(root.contains("stored_size"));
    CHECK(root["stored_size"].get<uint64_t>() < root["size"].get<uint64_t>());
    const std::string text =
        run_checked({test::osup_build_exe(), "inspect", dir / "o-zstd/b-1.0-x86_64.osup"}).out;
    const size_t at = text.find("    root    root.erofs.zst ");
    REQUIRE(at != std::string::npos);
    const std::string line = text.substr(at, text.find('\n', at) - at);
    CHECK_THAT(line, Catch::Contains(" " + format_size(root["stored_size"].get<uint64_t>()) +
                                     "  sha256 ") &&
                         Catch::EndsWith("  (zstd; " + format_size(root["size"].get<uint64_t>()) +
                                         " unpacked)"));
  }

  // auto (the default): a root of mostly random data gains nothing from zstd and travels as it
  // is; its zero-padded verity tree does gain and is compressed. --progress bar shows why.
  fs::create_directories(dir / "rootfs/usr/share");
  test::write_random_file(dir / "rootfs/usr/share/random.bin", 8 << 20, 9);
  // As much random data again as the initrd the builder now keeps out of the root, so both
  // payloads stay on their side of auto's 10 % line.
  test::write_random_file(dir / "rootfs/usr/share/random2.bin", 200 * 1024 + 7, 12);
  write_spec(dir / "auto.json", R"({"name":"b","version":"1.0","rootfs":{"directory":"rootfs"},
    "disk":{"size":"320M","esp":"64M","slot":"64M"}})");
  r = build(dir / "auto.json", key, dir / "o-auto", {"--no-disk", "--progress", "bar"});
  REQUIRE(r.exit_code == 0);
  CHECK(payloads(dir / "o-auto") ==
        std::map<std::string, std::string>{{"verity", "zstd root.verity.zst"},
                                           {"root", "none root.erofs"}});
  CHECK_THAT(r.err, Catch::Contains("bundle: root uncompressed (zstd would save ~") &&
                        Catch::Contains("auto wants >= 10 %)"));

  r = build(dir / "auto.json", key, dir / "o-bad", {"--bundle-compression", "xz"});
  CHECK(r.exit_code != 0);
  CHECK(r.err ==
        "osup-build: --bundle-compression: 'xz' is not a bundle compression; use auto, zstd or "
        "none\n");
  CHECK_FALSE(fs::exists(dir / "o-bad"));
}
