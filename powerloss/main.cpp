// osup-powerloss: replays the crash states of a recorded write log onto its base image
// and checks that each one boots a good system (docs/powerloss.md).
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "base/cli_args.h"
#include "base/error.h"
#include "powerloss/campaign.h"

namespace {

constexpr const char* kUsage =
    "osup-powerloss --base IMG --log LOG --keys DIR [--phases FILE] [--subsets N] [--torn N] "
    "[--torn-unit BYTES] [--seed N] [--limit N] [--data-every N] [--work DIR] [--quiet] "
    "[--rerun-every N --bundle BUNDLE [--delta DELTA] [--osup EXE]] "
    "[--dump-every N --dump-dir DIR]";

size_t number(const osup::CliArgs& a, const std::string& name, size_t fallback) {
  const std::string v = a.value_or(name, std::to_string(fallback));
  try {
    size_t used = 0;
    const size_t n = std::stoull(v, &used);
    if (used == v.size()) return n;
  } catch (const std::exception&) {
  }
  osup::fail("osup-powerloss: --" + name + " wants a number, not '" + v + "'");
}

int run(int argc, char** argv) {
  using namespace osup::powerloss;
  osup::CliArgs a(
      "osup-powerloss", std::vector<std::string>(argv + 1, argv + argc),
      {"base", "log", "keys", "phases", "subsets", "torn", "seed", "limit", "data-every", "work",
       "torn-unit", "rerun-every", "bundle", "osup", "delta", "dump-every", "dump-dir"},
      {"quiet"});
  a.expect_positionals(0, 0, kUsage);
  const WriteLog log(a.required("log", kUsage));
  CampaignOptions o;
  o.generate.subsets = static_cast<uint32_t>(number(a, "subsets", 8));
  o.generate.torn = static_cast<uint32_t>(number(a, "torn", 2));
  o.generate.seed = number(a, "seed", 1);
  const size_t unit = number(a, "torn-unit", 512);
  if (unit == 0 || unit % log.sector_size() != 0)
    osup::fail("osup-powerloss: --torn-unit must be a multiple of the log's " +
               std::to_string(log.sector_size()) + "-byte sectors, not " + std::to_string(unit));
  o.generate.torn_unit = static_cast<uint32_t>(unit / log.sector_size());
  o.limit = number(a, "limit", 0);
  o.data_every = number(a, "data-every", 1);
  const std::string work = a.value_or("work", "/var/tmp/osup-powerloss");
  o.rerun_every = number(a, "rerun-every", 0);
  o.dump_every = number(a, "dump-every", 0);
  o.dump_dir = a.value_or("dump-dir", work + "/states");
  o.keys_dir = a.required("keys", kUsage);
  o.bundle = a.value_or("bundle", "");
  o.delta = a.value_or("delta", "");
  if (!o.delta.empty() && !std::filesystem::is_regular_file(o.delta))
    osup::fail("osup-powerloss: --delta wants the delta the recorded switch-delta installed ('" +
               o.delta + "' is not a file)");
  // Beside this tool in the build tree: build/powerloss/osup-powerloss, build/updater/osup.
  const auto self = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  o.osup_exe = a.value_or("osup", (self.parent_path() / "updater/osup").string());
  o.rerun_image = work + "/rerun.img";
  if (o.rerun_every && !std::filesystem::is_regular_file(o.bundle))
    osup::fail(
        "osup-powerloss: --rerun-every needs --bundle, the bundle the recorded switch "
        "installed ('" +
        o.bundle + "' is not a file)");
  if (o.rerun_every && ::access(o.osup_exe.c_str(), X_OK) != 0)
    osup::fail("osup-powerloss: no osup binary at " + o.osup_exe + "; build it or pass --osup");
  CrashChecker checker(a.required("base", kUsage), log, osup::sig::TrustStore::load_dir(o.keys_dir),
                       work);
  const auto phases = read_phases(a.value_or("phases", ""), log);
  const auto results =
      run_campaign(log, checker, phases, o, a.flag("quiet") ? nullptr : &std::cerr);
  print_summary(std::cout, results, checker.counts());
  for (const auto& r : results)
    if (!r.failures.empty()) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return osup::run_cli("osup-powerloss", [&] { return run(argc, argv); });
}
