// Crash safety: interrupt switch, rollback and mark-good at every state-changing step
// (OSUP_FAULT_AT=N ends the process there, as a power cut would) and with kill -9 at
// random moments; after each, the machine must still boot a good slot and a rerun works.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/fd.h"
#include "boot/esp_access.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Disk {
  std::string path, keys;

  RunResult osup(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                 std::optional<std::string> booted = {}) const {
    std::vector<std::string> argv = {test::osup_exe(), "--disk", path, "--keys", keys,
                                     "--progress",     "none"};
    if (booted) argv.insert(argv.end(), {"--booted", *booted});
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {.env = std::move(env)});
  }
  json status() const {
    RunResult r = osup({"status", "--json"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  }
  std::string partition_hash(const std::string& label) const {
    return test::partition_sha256(path, label);
  }
  std::optional<std::string> entry(const std::string& name) const {
    gpt::Table t = gpt::read(path);
    return open_image_esp(path, t.find("esp")->start)->read("/loader/entries/" + name);
  }
};

Disk copy_disk(const std::string& from, const std::string& to, const std::string& keys) {
  run_checked({"cp", "--sparse=always", from, to});
  return {to, keys};
}

// How many fault points a command passes through when nothing goes wrong.
int count_points(const Disk& d, const std::vector<std::string>& args,
                 const std::optional<std::string>& booted) {
  std::string log = d.path + ".faults";
  fs::remove(log);
  RunResult r = d.osup(args, {{"OSUP_FAULT_LOG", log}}, booted);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::ifstream in(log);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// After any interruption: slot `running` and its entry are intact, and the loader would
// boot a slot that is good, or a new slot whose contents verify completely.
void check_still_bootable(const Disk& d, const std::string& running, const std::string& root_hash,
                          const std::string& entry_name, const std::string& entry_text) {
  CHECK(d.partition_hash("root-" + running) == root_hash);
  CHECK(d.entry(entry_name) == entry_text);
  json s = d.status();
  REQUIRE(s["next_boot"].is_string());
  std::string next = s["next_boot"];
  if (next != running) {
    INFO("the loader would boot slot " << next << ", which must verify");
    CHECK(d.osup({"verify", next}).exit_code == 0);
  } else {
    CHECK(s["slots"][running]["state"] == "good");
  }
}

}  // namespace

TEST_CASE("switch, rollback and mark-good survive a fault at every step", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  test::TestImage v2 = test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key);
  Disk pristine{v1.disk, key.trust_dir};
  const std::string root_a = pristine.partition_hash("root-a");
  const std::string entry_a = *pristine.entry("osup-a.conf");
  int tried = 0;

  // switch a -> b, interrupted at each point.
  const int switch_points = count_points(copy_disk(v1.disk, dir / "count.img", key.trust_dir),
                                         {"switch", v2.bundle}, "a");
  REQUIRE(switch_points >= 8);
  for (int k = 1; k <= switch_points; ++k) {
    INFO("switch interrupted at fault point " << k);
    {
      Disk d = copy_disk(v1.disk, dir / "f.img", key.trust_dir);
      RunResult r = d.osup({"switch", v2.bundle}, {{"OSUP_FAULT_AT", std::to_string(k)}}, "a");
      CHECK(r.exit_code == 97);
      check_still_bootable(d, "a", root_a, "osup-a.conf", entry_a);
      // The machine still runs a: a rerun writes b again and leaves a alone.
      RunResult again = d.osup({"switch", v2.bundle}, {}, "a");
      INFO(again.err);
      CHECK(again.exit_code == 0);
      CHECK(d.status()["slots"]["b"]["version"] == "2.0.0");
      CHECK(d.partition_hash("root-a") == root_a);
    }
    ++tried;
  }

  // A disk where b booted once and runs now: mark-good and rollback interrupted.
  Disk base = copy_disk(v1.disk, dir / "base.img", key.trust_dir);
  REQUIRE(base.osup({"switch", v2.bundle}).exit_code == 0);
  {
    gpt::Table t = gpt::read(base.path);
    auto esp = open_image_esp(base.path, t.find("esp")->start);
    esp->rename("/loader/entries/osup-b+3.conf", "/loader/entries/osup-b+2-1.conf");
  }
  const std::string root_b = base.partition_hash("root-b");
  const std::string entry_b = *base.entry("osup-b+2-1.conf");
  const int good_points =
      count_points(copy_disk(base.path, dir / "count2.img", key.trust_dir), {"mark-good"}, "b");
  REQUIRE(good_points >= 1);
  for (int k = 1; k <= good_points; ++k) {
    Disk d = copy_disk(base.path, dir / "g.img", key.trust_dir);
    CHECK(d.osup({"mark-good"}, {{"OSUP_FAULT_AT", std::to_string(k)}}, "b").exit_code == 97);
    // Either still trying (the rename did not happen) or good: never lost.
    json s = d.status();
    CHECK((s["slots"]["b"]["state"] == "trying" || s["slots"]["b"]["state"] == "good"));
    CHECK(s["next_boot"] == "b");
    CHECK(d.partition_hash("root-a") == root_a);
    CHECK(d.osup({"mark-good"}, {}, "b").exit_code == 0);
    CHECK(d.status()["slots"]["b"]["state"] == "good");
    ++tried;
  }

  Disk good = copy_disk(base.path, dir / "good.img", key.trust_dir);
  REQUIRE(good.osup({"mark-good"}, {}, "b").exit_code == 0);
  const std::string entry_b_good = *good.entry("osup-b.conf");
  const int rb_points =
      count_points(copy_disk(good.path, dir / "count3.img", key.trust_dir), {"rollback"}, "b");
  REQUIRE(rb_points >= 1);
  for (int k = 1; k <= rb_points; ++k) {
    Disk d = copy_disk(good.path, dir / "r.img", key.trust_dir);
    CHECK(d.osup({"rollback"}, {{"OSUP_FAULT_AT", std::to_string(k)}}, "b").exit_code == 97);
    check_still_bootable(d, "b", root_b, "osup-b.conf", entry_b_good);
    CHECK(d.osup({"rollback"}, {}, "b").exit_code == 0);
    CHECK(d.status()["next_boot"] == "a");
    ++tried;
  }
  (void)entry_b;
  std::cout << "fault injection: " << tried << " interruption points tried (switch "
            << switch_points << ", mark-good " << good_points << ", rollback " << rb_points
            << ")\n";
}

TEST_CASE("switch survives kill -9 at random moments", "[integration]") {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  test::TestImage v2 = test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key);
  // The same version with uncompressed payloads (read in place): every other round uses it.
  test::TestImage v2_none = test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key, "tiny",
                                                   {"--bundle-compression", "none"}, "out-none");
  Disk pristine{v1.disk, key.trust_dir};
  const std::string root_a = pristine.partition_hash("root-a");
  const std::string entry_a = *pristine.entry("osup-a.conf");

  // How long an undisturbed switch takes, to spread the kills over it.
  Disk timing = copy_disk(v1.disk, dir / "t.img", key.trust_dir);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(timing.osup({"switch", v2.bundle}).exit_code == 0);
  auto full =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);

  std::mt19937 rng(42);
  int killed = 0;
  const int rounds = 12;
  for (int i = 0; i < rounds; ++i) {
    Disk d = copy_disk(v1.disk, dir / "k.img", key.trust_dir);
    const std::string& bundle = i % 2 ? v2_none.bundle : v2.bundle;
    INFO("round " << i << ", " << bundle);
    auto delay = std::chrono::microseconds(rng() % static_cast<uint32_t>(full.count() + 1));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      std::string exe = test::osup_exe();
      ::execl(exe.c_str(), exe.c_str(), "--disk", d.path.c_str(), "--keys", d.keys.c_str(),
              "--booted", "a", "switch", bundle.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    std::this_thread::sleep_for(delay);
    if (::kill(pid, SIGKILL) == 0) ++killed;
    int status = 0;
    ::waitpid(pid, &status, 0);
    check_still_bootable(d, "a", root_a, "osup-a.conf", entry_a);
    RunResult again = d.osup({"switch", bundle}, {}, "a");
    INFO(again.err);
    CHECK(again.exit_code == 0);
    CHECK(d.partition_hash("root-a") == root_a);
  }
  std::cout << "kill -9: " << rounds << " rounds over a " << full.count() / 1000 << " ms switch, "
            << killed << " killed mid-run\n";
}
