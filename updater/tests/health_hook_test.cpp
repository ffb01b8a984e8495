// The image's health-failure hook (bootloader-hooks/systemd/osup-health-failed), the real
// script, run on the host against real disk images made by osup-build, with its osup
// command pointed at `osup --disk IMG --booted S --boot-loader L`: on a trial boot it marks
// the slot bad and reboots, with GRUB as with systemd-boot; on a good slot it does nothing.
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/fd.h"
#include "boot/esp_access.h"
#include "boot/grub_env.h"
#include "boot/systemd_boot.h"
#include "boot/systemd_boot_uki.h"
#include "format/gpt.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// systemd-boot-uki: a Secure Boot image, its slots signed UKIs (Type #2 entries).
const char* const kLoaders[] = {"grub", "systemd-boot", "systemd-boot-uki"};

struct HookRun {
  RunResult result;
  std::string reboots;  // one line per run of the reboot command
  std::string log;      // health-failures.log
  std::string console;  // what it wrote to the console
};

struct Rig {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  std::string loader;
  std::string sb;  // the Secure Boot keys of a systemd-boot-uki rig
  test::TestImage v1;
  explicit Rig(std::string l) : loader(std::move(l)), sb(secure_boot_keys()), v1(build("1.0.0")) {
    // Stand-ins for what the running system provides: a reboot that only leaves a trace,
    // and osup-health-check's list of failed checks (hook() writes the kernel command line).
    atomic_write_file(dir / "reboot", "#!/bin/sh\necho \"reboot $*\" >>'" + dir / "reboots" + "'\n",
                      0755);
    fs::create_directories(dir / "run");
    atomic_write_file(dir / "run/health-failed", " 10-data-partition 50-app\n");
  }

  std::string secure_boot_keys() const {
    if (loader != kSystemdBootUki) return "";
    run_checked({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir / "sb"});
    return dir / "sb";
  }
  test::TestImage build(const std::string& version) const {
    return test::build_tiny_image(dir.path(), Arch::x86_64, version, key, "tiny", {}, "out", sb);
  }

  // osup on the image with this rig's boot loader; what the hook gets as its osup command.
  std::vector<std::string> osup_argv(const std::string& booted) const {
    return test::offline_osup(v1.disk, key, booted, {"--boot-loader", loader});
  }
  RunResult osup(std::vector<std::string> args, const std::string& booted = "a") const {
    std::vector<std::string> argv = osup_argv(booted);
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  json status() const {
    RunResult r = osup({"status", "--json"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  }
  std::unique_ptr<EspAccess> esp() const {
    gpt::Table t = gpt::read(v1.disk);
    return open_image_esp(v1.disk, t.find("esp")->start);
  }
  // Everything either loader reads on the ESP: entries (names and content) and grubenv.
  std::string boot_state() const {
    auto e = esp();
    std::string out = "grubenv=" + e->read("/grub/grubenv").value_or("(none)") + "\n";
    out += "grubenv.1=" + e->read("/grub/grubenv.1").value_or("(none)") + "\n";
    for (const std::string& f : e->list("/loader/entries"))
      out += f + "=" + e->read("/loader/entries/" + f).value_or("") + "\n";
    for (const std::string& f : e->list("/EFI/Linux")) out += f + "\n";  // Type #2 names
    return out;
  }
  // One boot as the loader performs it (it spends a try of a trying slot); returns the slot.
  std::string loader_boots() const {
    auto e = esp();
    if (loader == "grub") {
      auto slot = simulate_grub_boot(*e, "/grub/grubenv");
      REQUIRE(slot);
      return std::string(1, layout::slot_char(*slot));
    }
    std::string slot = status()["next_boot"];
    if (loader == kSystemdBootUki) {  // the loader's own counting, modelled in boot/
      REQUIRE(simulate_systemd_boot(*e));
      return slot;
    }
    const std::regex counted("osup-" + slot + "\\+(\\d+)(?:-(\\d+))?\\.conf");
    for (const std::string& f : e->list("/loader/entries")) {
      std::smatch m;
      if (!std::regex_match(f, m, counted)) continue;
      const int left = std::stoi(m[1]), done = m[2].matched ? std::stoi(m[2]) : 0;
      if (left > 0)
        e->rename("/loader/entries/" + f, "/loader/entries/osup-" + slot + "+" +
                                              std::to_string(left - 1) + "-" +
                                              std::to_string(done + 1) + ".conf");
    }
    return slot;
  }
  RunResult switch_to(const std::string& version, const std::string& booted) {
    return osup({"switch", build(version).bundle}, booted);
  }
  // Slot b gets v2 through `osup switch`, boots and is marked good: the running good slot.
  // (The factory image has no GRUB environment yet, so slot a is not a GRUB slot.)
  void good_b() {
    RunResult r = switch_to("2.0.0", "a");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(loader_boots() == "b");
    REQUIRE(osup({"mark-good"}, "b").exit_code == 0);
  }
  // Then VERSION goes into slot a and boots once: a trial boot of a.
  void trial_of_a(const std::string& version) {
    RunResult r = switch_to(version, "b");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(loader_boots() == "a");
  }
  std::string state_of(const std::string& slot) const {
    RunResult r = osup({"state"}, slot);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  }

  // The real hook, as systemd runs it (its own shebang, the unit's environment) on a boot
  // of slot BOOTED.
  HookRun hook(const std::string& booted,
               const std::map<std::string, std::string>& env = {}) const {
    atomic_write_file(dir / "cmdline", "console=ttyS0 roothash=00 osup.slot=" + booted + "\n");
    std::string osup_cmd;
    for (const std::string& a : osup_argv(booted)) osup_cmd += (osup_cmd.empty() ? "" : " ") + a;
    RunOptions opts;
    opts.env = {{"OSUP_HEALTH_OSUP", osup_cmd},
                {"OSUP_HEALTH_REBOOT", dir / "reboot"},
                {"OSUP_HEALTH_STATE", dir / "var-lib-osup"},
                {"OSUP_HEALTH_RUN", dir / "run"},
                {"OSUP_HEALTH_CMDLINE", dir / "cmdline"},
                {"OSUP_HEALTH_CONSOLE", dir / "console"}};
    fs::remove(dir / "console");
    for (const auto& [k, v] : env) opts.env[k] = v;
    HookRun h;
    h.result = run({test::source_dir() + "/bootloader-hooks/systemd/osup-health-failed"}, opts);
    if (fs::exists(dir / "reboots")) h.reboots = read_text_file(dir / "reboots");
    if (fs::exists(dir / "var-lib-osup/health-failures.log"))
      h.log = read_text_file(dir / "var-lib-osup/health-failures.log");
    if (fs::exists(dir / "console")) h.console = read_text_file(dir / "console");
    return h;
  }
};

std::string failed(const std::string& slot) {
  return "slot " + slot + ": health checks failed: 10-data-partition 50-app; ";
}

}  // namespace

TEST_CASE(
    "health hook: a failed trial boot is marked bad and rebooted, GRUB and systemd-boot, "
    "Type #1 and UKI",
    "[integration]") {
  for (const char* loader : kLoaders) {
    DYNAMIC_SECTION(loader) {
      Rig rig(loader);
      rig.good_b();
      rig.trial_of_a("3.0.0");
      REQUIRE(rig.state_of("a") == "trying\n");
      HookRun h = rig.hook("a");
      INFO(h.result.out << h.result.err);
      CHECK(h.result.exit_code == 0);
      CHECK_THAT(h.result.out, Catch::Contains("trial boot; marking the slot bad and rebooting"));
      CHECK(h.reboots == "reboot \n");
      // The person at the console sees why the machine reboots, in one line.
      CHECK(h.console ==
            "osup: health check failed: 10-data-partition 50-app (slot a, trial boot); going back "
            "to the previous version: rebooting into slot b (details: " +
                rig.dir / "var-lib-osup/health-failures.log)\n");
      CHECK_THAT(h.log, Catch::Matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ " + failed("a") +
                                       "trial boot: marked bad, rebooting\n"));
      json s = rig.status();
      CHECK(s["boot_loader"] == loader);
      CHECK(s["slots"]["a"]["state"] == "bad");
      CHECK(s["slots"]["b"]["state"] == "good");
      CHECK(s["next_boot"] == "b");
      CHECK(rig.loader_boots() == "b");  // the reboot lands on the good slot at once

      // A second failure is appended to the record, which keeps the earlier one.
      rig.trial_of_a("3.0.1");
      h = rig.hook("a");
      CHECK(h.reboots == "reboot \nreboot \n");
      CHECK(std::count(h.log.begin(), h.log.end(), '\n') == 2);
      CHECK(rig.status()["slots"]["a"]["state"] == "bad");
    }
  }
}

TEST_CASE("health hook: the last try (counted down to 0 before booting) is still a trial",
          "[integration]") {
  for (const char* loader : kLoaders) {
    DYNAMIC_SECTION(loader) {
      Rig rig(loader);
      rig.good_b();
      rig.trial_of_a("3.0.0");
      CHECK(rig.loader_boots() == "a");
      CHECK(rig.loader_boots() == "a");
      // The loader spent a's last try to boot it: the backend now reports it bad.
      REQUIRE(rig.state_of("a") == "bad\n");
      HookRun h = rig.hook("a");
      INFO(h.result.out << h.result.err);
      CHECK(h.result.exit_code == 0);
      CHECK(h.reboots == "reboot \n");
      CHECK_THAT(h.log, Catch::EndsWith(failed("a") + "trial boot: marked bad, rebooting\n"));
      CHECK(rig.status()["next_boot"] == "b");
    }
  }
}

TEST_CASE("health hook: a slot already marked good is neither marked bad nor rebooted",
          "[integration]") {
  for (const char* loader : kLoaders) {
    DYNAMIC_SECTION(loader) {
      Rig rig(loader);
      rig.good_b();
      REQUIRE(rig.state_of("b") == "good\n");
      const std::string before = rig.boot_state();
      HookRun h = rig.hook("b");
      INFO(h.result.out << h.result.err);
      CHECK(h.result.exit_code == 0);
      CHECK_THAT(h.result.out, Catch::Contains("already marked good; not rolling back"));
      CHECK(h.reboots.empty());
      CHECK_THAT(h.log, Catch::EndsWith(failed("b") + "slot already good, no action\n"));
      CHECK(h.console.empty());  // no reboot, nothing to explain on the console
      CHECK(rig.boot_state() == before);
      json s = rig.status();
      CHECK(s["boot_loader"] == loader);
      CHECK(s["slots"]["b"]["state"] == "good");
      CHECK(s["next_boot"] == "b");
    }
  }
}

TEST_CASE("health hook: action none, and an osup that cannot answer, only report",
          "[integration]") {
  Rig rig("grub");
  rig.good_b();
  rig.trial_of_a("3.0.0");
  const std::string before = rig.boot_state();
  HookRun h = rig.hook("a", {{"OSUP_HEALTH_FAILURE_ACTION", "none"}});
  INFO(h.result.out << h.result.err);
  CHECK(h.result.exit_code == 0);
  CHECK_THAT(h.result.out, Catch::Contains("action is 'none', not rebooting"));
  CHECK(h.reboots.empty());
  CHECK_THAT(h.log, Catch::EndsWith(failed("a") + "trial boot, action none\n"));
  CHECK(rig.boot_state() == before);
  CHECK(rig.state_of("a") == "trying\n");

  // An unknown action is refused before anything is marked.
  h = rig.hook("a", {{"OSUP_HEALTH_FAILURE_ACTION", "halt"}});
  CHECK(h.result.exit_code != 0);
  CHECK_THAT(h.result.out, Catch::Contains("unknown OSUP_HEALTH_FAILURE_ACTION 'halt'"));
  CHECK(h.reboots.empty());
  CHECK(rig.boot_state() == before);

  // osup cannot say whether this is a trial boot: no mark-bad, no reboot (a reboot loop
  // on a good slot would be worse than a trial that runs out of tries on its own).
  h = rig.hook("a", {{"OSUP_HEALTH_OSUP",
                      test::osup_exe() + " --disk " + rig.dir / "missing.img" + " --booted a"}});
  CHECK(h.result.exit_code != 0);
  CHECK_THAT(h.result.out, Catch::Contains("state' failed too"));
  CHECK_THAT(h.result.err, Catch::Contains("missing.img"));
  CHECK(h.reboots.empty());
  CHECK_THAT(h.log,
             Catch::EndsWith(failed("a") + "state unknown (osup state failed), no action\n"));
  CHECK(rig.boot_state() == before);
}
