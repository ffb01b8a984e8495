// osup-powerloss: replays the crash states of a recorded write log onto its base image
// and checks that each one boots a good system (docs/powerloss.md).
#include <iostream>

#include "base/cli_args.h"
#include "base/error.h"
#include "powerloss/campaign.h"

namespace {

constexpr const char* kUsage =
    "osup-powerloss --base IMG --log LOG --keys DIR [--phases FILE] [--subsets N] [--torn N] "
    "[--torn-unit BYTES] [--seed N] [--limit N] [--data-every N] [--work DIR] [--quiet]";

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
  osup::CliArgs a("osup-powerloss", std::vector<std::string>(argv + 1, argv + argc),
                  {"base", "log", "keys", "phases", "subsets", "torn", "seed", "limit",
                   "data-every", "work", "torn-unit"},
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
  CrashChecker checker(a.required("base", kUsage), log,
                       osup::sig::TrustStore::load_dir(a.required("keys", kUsage)),
                       a.value_or("work", "/var/tmp/osup-powerloss"));
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
