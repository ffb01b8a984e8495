// What runs osup apply and osup data backup without a user: the stamp that says whether
// the boot has to apply, the os section's update.conf, and the shipped unit files
// (checked by systemd-analyze verify).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/fd.h"
#include "base/process.h"
#include "tests/support/test_support.h"
#include "updater/machine/apply_stamp.h"
#include "updater/machine/os_backend.h"
#include "updater/update_config.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::machine;
using Catch::Matchers::Contains;

TEST_CASE("the apply stamp changes with the machine file and with the OS", "[unit]") {
  test::TempDir dir;
  const std::string file = dir / "machine.json", os = dir / "os-release",
                    stamp = dir / "state/machine-apply.stamp";
  std::ofstream(file) << R"({ "format": 1 })";
  std::ofstream(os) << "ID=debian\nIMAGE_ID=\"minimal\"\nIMAGE_VERSION=\"1.0\"\n";
  CHECK(os_identity(os) == "minimal 1.0");
  const ApplyStamp first = current_stamp(file, os);
  CHECK_FALSE(read_stamp(stamp) == first);  // never applied: apply
  write_stamp(stamp, first);
  CHECK(read_stamp(stamp) == first);  // nothing changed: skip
  CHECK(current_stamp(file, os) == first);

  std::ofstream(os) << "ID=debian\nIMAGE_ID=\"minimal\"\nIMAGE_VERSION=\"2.0\"\n";
  CHECK_FALSE(read_stamp(stamp) == current_stamp(file, os));  // an OS switch: apply
  write_stamp(stamp, current_stamp(file, os));
  std::ofstream(file) << R"({ "format": 1, "containers": {} })";
  CHECK_FALSE(read_stamp(stamp) == current_stamp(file, os));  // the file changed: apply

  std::ofstream(stamp) << "not json";
  CHECK(read_stamp(stamp) == ApplyStamp{});  // unreadable: apply again, which is safe
  CHECK(os_identity(dir / "missing") == "");
}

TEST_CASE("the os section sets channel and ca in update.conf and keeps the rest", "[unit]") {
  const std::string before =
      "# mine\nchannel = https://old.example.com/\ntimer = on\nca = /etc/osup/old.pem\n";
  const std::string after =
      with_os_section(before, OsSection{"https://new.example.com/stable/", std::nullopt});
  CHECK(after == "# mine\nchannel = https://new.example.com/stable/\ntimer = on\n");
  const std::string with_ca =
      with_os_section(after, OsSection{"https://new.example.com/stable/", "/etc/osup/ca.pem"});
  CHECK(with_ca ==
        "# mine\nchannel = https://new.example.com/stable/\ntimer = on\nca = /etc/osup/ca.pem\n");
  CHECK(with_os_section(
            with_ca, OsSection{"https://new.example.com/stable/", "/etc/osup/ca.pem"}) == with_ca);
  const UpdateConfig c = parse_update_config(with_ca, "update.conf");
  CHECK(c.timer);
  CHECK(c.ca == "/etc/osup/ca.pem");
  CHECK(with_os_section("", OsSection{"https://u.example.com/", std::nullopt}) ==
        "channel = https://u.example.com/\n");
}

TEST_CASE("the machine units pass systemd-analyze verify", "[unit]") {
  if (!find_tool("systemd-analyze")) {
    WARN("systemd-analyze is not installed: skipped");
    return;
  }
  test::TempDir dir;
  std::vector<std::string> argv = {"systemd-analyze", "verify", "--man=no"};
  for (const char* unit : {"osup-apply.service", "osup-backup.service", "osup-backup.timer"}) {
    std::string text = read_text_file(test::source_dir() + "/bootloader-hooks/systemd/" + unit);
    CHECK_THAT(text, Contains("/etc/osup/machine.json"));
    // The built osup stands in for /usr/bin/osup, which verify wants to exist.
    for (size_t at; (at = text.find("/usr/bin/osup")) != std::string::npos;)
      text.replace(at, 13, test::osup_exe());
    std::ofstream(dir / unit) << text;
    argv.push_back(dir / unit);
  }
  const RunResult r = test::run_cmd(argv);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  const std::string preset =
      read_text_file(test::source_dir() + "/bootloader-hooks/systemd/80-osup.preset");
  CHECK_THAT(preset, Contains("enable osup-apply.service") && Contains("enable osup-backup.timer"));
}
