// osup --disk end to end on real disk images made by osup-build (both arches): switch,
// status, boot counting as systemd-boot performs it, mark-good/bad, rollback, and the bad
// bundles that must change nothing.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/fd.h"
#include "boot/esp_access.h"
#include "boot/grub_env.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Rig {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  Arch arch;
  test::TestImage v1;
  explicit Rig(Arch a) : arch(a), v1(test::build_tiny_image(dir.path(), a, "1.0.0", key)) {}

  RunResult osup(const std::vector<std::string>& args,
                 const std::optional<std::string>& booted = {}) const {
    return test::run_offline_osup(v1.disk, key, booted.value_or(""), args);
  }
  json status() const {
    RunResult r = osup({"status", "--json"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  }
  test::TestImage bundle(const std::string& version, const std::string& name = "tiny") const {
    return test::build_tiny_image(dir.path(), arch, version, key, name);
  }
  std::shared_ptr<EspAccess> esp() const {
    gpt::Table t = gpt::read(v1.disk);
    return open_image_esp(v1.disk, t.find("esp")->start);
  }
  // Everything the boot loader and osup keep on the ESP.
  std::map<std::string, std::string> esp_state() const {
    auto e = esp();
    std::map<std::string, std::string> out;
    for (std::string d : {"/loader", "/loader/entries", "/osup/a", "/osup/b"})
      for (const std::string& f : e->list(d))
        if (auto content = e->read(d + "/" + f)) out[d + "/" + f] = *content;
    return out;
  }
  std::string partition_hash(const std::string& label) const {
    return test::partition_sha256(v1.disk, label);
  }
  // What systemd-boot does when it boots an entry with a boot counter: +N-M -> +(N-1)-(M+1).
  std::string loader_boots() const {
    json s = status();
    std::string slot = s["next_boot"];
    auto e = esp();
    std::regex counted("osup-" + slot + "\\+(\\d+)(?:-(\\d+))?\\.conf");
    for (const std::string& f : e->list("/loader/entries")) {
      std::smatch m;
      if (std::regex_match(f, m, counted)) {
        int left = std::stoi(m[1]), done = m[2].matched ? std::stoi(m[2]) : 0;
        if (left > 0)
          e->rename("/loader/entries/" + f, "/loader/entries/osup-" + slot + "+" +
                                                std::to_string(left - 1) + "-" +
                                                std::to_string(done + 1) + ".conf");
      }
    }
    return slot;
  }
};

}  // namespace

TEST_CASE("switch, boot counting, mark-good and rollback on a real disk image", "[integration]") {
  for (Arch arch : {Arch::x86_64, Arch::aarch64}) {
    DYNAMIC_SECTION(arch_name(arch)) {
      Rig rig(arch);
      json s = rig.status();
      CHECK(s["slots"]["a"]["state"] == "good");
      CHECK(s["slots"]["a"]["version"] == "1.0.0");
      CHECK(s["slots"]["b"]["state"] == "empty");
      CHECK(s["next_boot"] == "a");
      CHECK(s["arch"] == arch_name(arch));
      CHECK(s["data"]["filesystem_size"].get<uint64_t>() > 0);

      const std::string root_a = rig.partition_hash("root-a");
      const std::string entry_a = rig.esp_state().at("/loader/entries/osup-a.conf");
      auto v2 = rig.bundle("2.0.0");
      RunResult r = rig.osup({"switch", v2.bundle});
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
      s = rig.status();
      CHECK(s["slots"]["b"]["state"] == "trying");
      CHECK(s["slots"]["b"]["tries_left"] == 3);
      CHECK(s["slots"]["b"]["version"] == "2.0.0");
      CHECK(s["next_boot"] == "b");
      // The running slot and its entry were not touched.
      CHECK(rig.partition_hash("root-a") == root_a);
      CHECK(rig.esp_state().at("/loader/entries/osup-a.conf") == entry_a);
      // DPS pairing: the new slot's partition UUIDs are the halves of its root hash.
      gpt::Table t = gpt::read(rig.v1.disk);
      std::string hash = s["slots"]["b"]["root_hash"];
      CHECK(to_hex(t.find("root-b")->uuid.bytes) == hash.substr(0, 32));
      CHECK(to_hex(t.find("root-b-verity")->uuid.bytes) == hash.substr(32));
      CHECK(rig.osup({"verify", "b"}).exit_code == 0);
      // The oracle: veritysetup accepts the slot as written.
      {
        test::TempDir x;
        const gpt::Partition* rb = t.find("root-b");
        const gpt::Partition* vb = t.find("root-b-verity");
        for (auto [p, f] : {std::pair{rb, x / "root"}, std::pair{vb, x / "verity"}})
          run_checked({"dd", "if=" + rig.v1.disk, "of=" + f, "bs=1M",
                       "skip=" + std::to_string(p->start >> 20),
                       "count=" + std::to_string(p->size >> 20), "status=none"});
        RunResult vr = run({"veritysetup", "verify", x / "root", x / "verity", hash});
        INFO(vr.err);
        CHECK(vr.exit_code == 0);
      }

      // Boot b once: the loader counts a try; b then proves itself and is marked good.
      CHECK(rig.loader_boots() == "b");
      s = rig.status();
      CHECK(s["slots"]["b"]["tries_left"] == 2);
      CHECK(s["slots"]["b"]["tries_done"] == 1);
      REQUIRE(rig.osup({"mark-good"}, "b").exit_code == 0);
      s = rig.status();
      CHECK(s["slots"]["b"]["state"] == "good");
      CHECK(s["next_boot"] == "b");
      CHECK(rig.esp_state().count("/loader/entries/osup-b.conf") == 1);

      // Rollback is metadata only: a becomes next, and back again.
      r = rig.osup({"rollback"}, "b");
      REQUIRE(r.exit_code == 0);
      CHECK(r.out == "rolled back: slot a (tiny 1.0.0) boots next; reboot to start it\n");
      CHECK(rig.status()["next_boot"] == "a");
      // Twice before the reboot: says so, and nothing on the ESP changes.
      const auto esp_once = rig.esp_state();
      r = rig.osup({"rollback"}, "b");
      REQUIRE(r.exit_code == 0);
      CHECK(r.out ==
            "slot a (tiny 1.0.0) already boots next, nothing changed; reboot to start it\n");
      CHECK(rig.esp_state() == esp_once);
      REQUIRE(rig.osup({"rollback"}, "a").exit_code == 0);
      CHECK(rig.status()["next_boot"] == "b");
      CHECK(rig.partition_hash("root-a") == root_a);

      // Switching again after a rollback replaces the other slot (a, while b runs).
      auto v3 = rig.bundle("3.0.0");
      r = rig.osup({"switch", v3.bundle}, "b");
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
      s = rig.status();
      CHECK(s["slots"]["a"]["version"] == "3.0.0");
      CHECK(s["next_boot"] == "a");
      // v3 never comes up: every try fails, and the loader falls back to b by itself.
      for (int i = 0; i < 3; ++i) CHECK(rig.loader_boots() == "a");
      s = rig.status();
      CHECK(s["slots"]["a"]["state"] == "bad");
      CHECK(s["next_boot"] == "b");
      r = rig.osup({"rollback"}, "b");
      CHECK(r.exit_code != 0);
      CHECK_THAT(r.err, Catch::Contains("marked bad"));
      // mark-bad on the running slot hands the next boot to the other, good one... which is bad
      // here, so instead check mark-bad on a fresh trying slot below.
      REQUIRE(rig.osup({"rollback", "--force"}, "b").exit_code == 0);
    }
  }
}

TEST_CASE("mark-bad makes the loader pass over a trying slot", "[integration]") {
  Rig rig(Arch::x86_64);
  REQUIRE(rig.osup({"switch", rig.bundle("2.0.0").bundle}).exit_code == 0);
  CHECK(rig.loader_boots() == "b");
  REQUIRE(rig.osup({"mark-bad"}, "b").exit_code == 0);
  json s = rig.status();
  CHECK(s["slots"]["b"]["state"] == "bad");
  CHECK(s["next_boot"] == "a");
}

TEST_CASE("switch reads a bundle from stdin", "[integration]") {
  Rig rig(Arch::x86_64);
  auto v2 = rig.bundle("2.0.0");
  RunResult r = run({"sh", "-c",
                     "cat '" + v2.bundle + "' | '" + test::osup_exe() + "' --disk '" + rig.v1.disk +
                         "' --keys '" + rig.key.trust_dir + "' switch -"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(rig.status()["slots"]["b"]["version"] == "2.0.0");
}

TEST_CASE("bad bundles are refused before anything is written", "[integration]") {
  Rig rig(Arch::x86_64);
  test::TempDir x;
  auto v2 = rig.bundle("2.0.0");
  const auto esp_before = rig.esp_state();
  const std::string root_b = rig.partition_hash("root-b");
  const std::string verity_b = rig.partition_hash("root-b-verity");

  auto expect_refused = [&](const std::string& bundle, const std::string& why,
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"switch", bundle};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = rig.osup(args);
    INFO(bundle << ": " << r.err);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains(why));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
    CHECK(rig.esp_state() == esp_before);
    CHECK(rig.partition_hash("root-b") == root_b);  // refused before the first write
    CHECK(rig.partition_hash("root-b-verity") == verity_b);
    CHECK(rig.status()["next_boot"] == "a");
  };
  auto copy_with = [&](const std::string& name, auto mutate) {
    std::string path = x / name;
    std::string bytes = read_text_file(v2.bundle);
    mutate(bytes);
    atomic_write_file(path, bytes);
    return path;
  };

  // Unsigned / wrongly signed / tampered manifest.
  test::TestKey other = test::make_key(x / "other");
  auto foreign = test::build_tiny_image(x.path(), Arch::x86_64, "2.0.0", other);
  expect_refused(foreign.bundle, "does not match any trusted key");
  expect_refused(copy_with("tampered.osup",
                           [](std::string& b) {
                             auto at = b.find("\"2.0.0\"");
                             REQUIRE(at != std::string::npos);
                             b[at + 1] = '9';
                           }),
                 "signature");
  // Not a bundle at all, and a bundle cut short in its header.
  expect_refused(rig.v1.manifest, "not an osup bundle");
  expect_refused(copy_with("short.osup", [](std::string& b) { b.resize(700); }), "");
  // Wrong arch, wrong product, downgrade, too large for the slot.
  expect_refused(test::build_tiny_image(x.path(), Arch::aarch64, "2.0.0", rig.key).bundle,
                 "aarch64");
  expect_refused(rig.bundle("2.0.0", "other").bundle, "tiny-x86_64");
  expect_refused(rig.bundle("0.9.0").bundle, "--allow-downgrade");
  {
    test::TempDir big;
    test::make_busybox_rootfs(Arch::x86_64, big / "rootfs-x86_64");
    test::write_random_file(big / "rootfs-x86_64/usr/lib/blob", 80 << 20, 3);
    std::string spec = big / "big.json";
    atomic_write_file(spec, R"({"name":"tiny","version":"5.0.0","arch":"x86_64",
      "rootfs":{"directory":"rootfs-x86_64"},"disk":{"size":"1G","esp":"64M","slot":"256M"}})");
    run_checked({test::osup_build_exe(), "image", spec, "--key", rig.key.private_key, "--out",
                 big / "out"});
    expect_refused(big / "out/tiny-5.0.0-x86_64.osup", "slot root-b holds");
    // A bundle that fits but has no kernel could never boot: refused before any write too.
    fs::remove(big / "rootfs-x86_64/usr/lib/blob");
    run_checked({test::osup_build_exe(), "image", spec, "--key", rig.key.private_key, "--out",
                 big / "bare", "--no-disk"});
    expect_refused(big / "bare/tiny-5.0.0-x86_64.osup",
                   "carries no kernel, so the slot could not boot");
  }
  // A corrupt payload is only seen while streaming: the target slot is empty here, so its
  // (absent) entry stays absent and the loader's choice never moves.
  std::string corrupt = copy_with("corrupt.osup", [](std::string& b) { b[b.size() - 20000] ^= 1; });
  RunResult r = rig.osup({"switch", corrupt});
  CHECK(r.exit_code != 0);
  CHECK(rig.esp_state() == esp_before);
  CHECK(rig.status()["next_boot"] == "a");
  std::string truncated = copy_with("trunc.osup", [](std::string& b) { b.resize(b.size() / 2); });
  r = rig.osup({"switch", truncated});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("truncated") || Catch::Contains("unexpected end") ||
                        Catch::Contains("missing"));
  CHECK(rig.esp_state() == esp_before);
  // And after all that, the good bundle still installs.
  REQUIRE(rig.osup({"switch", v2.bundle}).exit_code == 0);
  CHECK(rig.partition_hash("root-b") != root_b);
}

TEST_CASE("switch installs a bundle with uncompressed payloads, and catches a bad block in it",
          "[integration]") {
  Rig rig(Arch::x86_64);
  auto v2 = test::build_tiny_image(rig.dir.path(), Arch::x86_64, "2.0.0", rig.key, "tiny",
                                   {"--bundle-compression", "none"});
  std::map<std::string, std::string> form;
  const json manifest = json::parse(read_text_file(v2.manifest));
  for (const json& p : manifest["payloads"]) form[p["name"]] = p["compression"];
  REQUIRE(form["root"] == "none");
  REQUIRE(form["verity"] == "none");

  // A flipped byte in the middle of the root image inside the bundle: the first bad block is
  // named, nothing boots it, the running slot is untouched.
  const std::string bytes = read_text_file(v2.bundle);
  uint64_t root_at = 0, root_size = 0;  // the root entry's data, from its ustar header
  for (size_t off = 0; off + 512 <= bytes.size();) {
    const std::string name(bytes.c_str() + off);
    const uint64_t size = std::stoull(bytes.substr(off + 124, 12), nullptr, 8);
    if (name == "root.erofs") root_at = off + 512, root_size = size;
    off += 512 + (size + 511) / 512 * 512;
    if (name.empty() || root_size) break;
  }
  REQUIRE(root_size == manifest["verity"]["data_size"].get<uint64_t>());
  const uint64_t bad_block = root_size / 4096 / 2 + 3;
  std::string bad = bytes;
  bad[root_at + bad_block * 4096 + 17] ^= 0x40;
  test::TempDir x;
  atomic_write_file(x / "bad.osup", bad);
  const auto esp_before = rig.esp_state();
  const std::string root_a = rig.partition_hash("root-a");
  RunResult r = rig.osup({"switch", x / "bad.osup"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("data block " + std::to_string(bad_block) +
                                    " does not match its verity hash"));
  CHECK(rig.esp_state() == esp_before);
  CHECK(rig.status()["next_boot"] == "a");

  // The good one installs and verifies, like a zstd bundle of the same image.
  r = rig.osup({"switch", v2.bundle});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  json s = rig.status();
  CHECK(s["slots"]["b"]["version"] == "2.0.0");
  CHECK(s["slots"]["b"]["root_hash"] == manifest["verity"]["root_hash"]);
  CHECK(s["next_boot"] == "b");
  CHECK(rig.osup({"verify", "b"}).exit_code == 0);
  CHECK(rig.partition_hash("root-a") == root_a);
  // From a pipe the same bundle goes through libarchive and lands the same bytes in b again.
  const std::string root_b = rig.partition_hash("root-b");
  r = run({"sh", "-c",
           "cat '" + v2.bundle + "' | '" + test::osup_exe() + "' --disk '" + rig.v1.disk +
               "' --keys '" + rig.key.trust_dir + "' --booted a switch -"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(rig.partition_hash("root-b") == root_b);
  CHECK(rig.osup({"verify", "b"}).exit_code == 0);
}

TEST_CASE("two osup runs on one disk cannot interleave", "[integration]") {
  Rig rig(Arch::x86_64);
  auto v2 = rig.bundle("2.0.0");
  // Hold the lock with a switch whose payloads arrive only after three seconds: its first
  // 16 KiB (manifest and signature) come at once, so it verifies them and takes the lock,
  // then waits for the rest. Nothing in the background may keep run()'s pipes open, or run()
  // would wait for it.
  RunResult holder =
      run({"sh", "-c",
           "((head -c 16384 '" + v2.bundle + "'; sleep 3; tail -c +16385 '" + v2.bundle +
               "') 2>/dev/null | '" + test::osup_exe() + "' --disk '" + rig.v1.disk + "' --keys '" +
               rig.key.trust_dir + "' switch - > /dev/null 2>&1 &) ; sleep 0.5"});
  REQUIRE(holder.exit_code == 0);
  // Out of patience: a clear error that says who holds the disk.
  RunResult impatient = rig.osup({"--lock-wait", "0.3", "switch", v2.bundle});
  CHECK(impatient.exit_code != 0);
  CHECK_THAT(impatient.err, Catch::Contains("another osup (switch, pid ") &&
                                Catch::Contains("is still working on") &&
                                Catch::Contains("--lock-wait"));
  // By default a run waits for the holder (up to 60 s) and then goes on: slot a is marked
  // good only after the switch has finished, and the switch's result stands.
  RunResult waiter = rig.osup({"mark-good"}, "a");
  INFO(waiter.err);
  CHECK(waiter.exit_code == 0);
  CHECK_THAT(waiter.err, Catch::Contains("waiting for another osup (switch, pid "));
  json st = rig.status();
  CHECK(st["slots"]["b"]["version"] == "2.0.0");
  CHECK(st["slots"]["b"]["state"] == "trying");
  CHECK(st["slots"]["a"]["state"] == "good");
  RunResult junk = rig.osup({"--lock-wait", "soon", "mark-good"}, "a");
  CHECK(junk.exit_code != 0);
  CHECK_THAT(junk.err, Catch::Contains("--lock-wait wants a number of seconds"));
}

TEST_CASE("the GRUB environment backend drives the same A/B cycle", "[integration]") {
  Rig rig(Arch::x86_64);
  auto grub = [&](std::vector<std::string> args, const std::optional<std::string>& booted = {}) {
    args.insert(args.begin(), {"--boot-loader", "grub"});
    return rig.osup(args, booted);
  };
  auto grub_status = [&] {
    RunResult r = grub({"status", "--json"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  };
  // The real grub-editenv reads what osup wrote.
  auto editenv_list = [&] {
    test::TempDir x;
    // osup alternates grubenv and grubenv.1 (no rename over it): the current one.
    const std::string current = GrubEnv(rig.esp(), "/grub/grubenv").current_path();
    std::string env = rig.esp()->read(current).value_or("");
    atomic_write_file(x / "grubenv", env);
    return run_checked({"grub-editenv", x / "grubenv", "list"}).out;
  };
  auto grub_boots = [&] {
    auto e = rig.esp();
    auto slot = simulate_grub_boot(*e, "/grub/grubenv");
    REQUIRE(slot);
    return std::string(1, layout::slot_char(*slot));
  };

  REQUIRE(grub({"switch", rig.bundle("2.0.0").bundle}, "a").exit_code == 0);
  std::string env = editenv_list();
  CHECK_THAT(env, Catch::Contains("ORDER=B A") && Catch::Contains("B_TRY=3") &&
                      Catch::Contains("B_OK=0") && Catch::Contains("osup.slot=b"));
  CHECK(grub_status()["next_boot"] == "b");
  CHECK(grub_boots() == "b");
  CHECK(grub_status()["slots"]["b"]["tries_left"] == 2);
  REQUIRE(grub({"mark-good"}, "b").exit_code == 0);
  CHECK_THAT(editenv_list(), Catch::Contains("B_OK=1"));
  CHECK(grub_status()["slots"]["b"]["state"] == "good");

  // A new version into a fails every try; GRUB falls back to b by itself.
  REQUIRE(grub({"switch", rig.bundle("3.0.0").bundle}, "b").exit_code == 0);
  CHECK_THAT(editenv_list(), Catch::Contains("ORDER=A B"));
  for (int i = 0; i < 3; ++i) CHECK(grub_boots() == "a");
  CHECK(grub_boots() == "b");
  json s = grub_status();
  CHECK(s["slots"]["a"]["state"] == "bad");
  CHECK(s["next_boot"] == "b");
  RunResult r = grub({"rollback"}, "b");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("marked bad"));
}
