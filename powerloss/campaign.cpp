#include "powerloss/campaign.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "base/error.h"
#include "powerloss/rerun.h"

namespace osup::powerloss {

std::vector<Phase> read_phases(const std::string& file, const WriteLog& log) {
  const size_t n = log.entries().size();
  if (file.empty()) return {Phase{"all", 0, n}};
  std::ifstream in(file);
  if (!in) fail("cannot read phases file " + file + "; the recorder writes it next to the log");
  std::vector<Phase> out;
  size_t start = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    uint64_t size = 0;
    if (!(fields >> name >> size) || name.starts_with("#")) continue;
    const size_t end = std::max(start, log.entry_at_log_size(size));
    out.push_back(Phase{name, start, end});
    start = end;
  }
  if (out.empty()) fail("phases file " + file + " has no 'NAME LOG_SIZE' line");
  if (start < n) out.push_back(Phase{"rest", start, n});  // after the last noted operation
  return out;
}

namespace {

void count_entries(const WriteLog& log, PhaseResult& r) {
  for (size_t i = r.phase.first; i < r.phase.last; ++i) {
    const LogEntry& e = log.entries()[i];
    if (e.is_flush()) ++r.flushes;
    if (e.is_write()) ++r.writes, r.bytes_written += e.nr_sectors * log.sector_size();
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
  return s;
}

const char* slot_name(const std::optional<layout::Slot>& s) {
  if (!s) return "none";
  return *s == layout::Slot::a ? "a" : "b";
}

// One line per image: "FILE BOOTS STATE" (BOOTS: a, b or none, the checker's pick).
void dump_state(CrashChecker& checker, const CampaignOptions& o, const Phase& ph, size_t i,
                const CrashState& s, const Verdict& v) {
  std::filesystem::create_directories(o.dump_dir);
  const std::string name = ph.name + "-" + std::to_string(i) + ".img";
  checker.write_disk_image(o.dump_dir + "/" + name, false);
  std::ofstream out(o.dump_dir + "/verdicts", std::ios::app);
  out << name << " " << slot_name(v.boots) << " " << s.describe() << "\n";
  if (!out) fail("cannot write " + o.dump_dir + "/verdicts");
}

}  // namespace

std::vector<PhaseResult> run_campaign(const WriteLog& log, CrashChecker& checker,
                                      const std::vector<Phase>& phases, const CampaignOptions& o,
                                      std::ostream* progress) {
  std::vector<PhaseResult> results;
  for (const Phase& ph : phases) {
    PhaseResult r{ph};
    count_entries(log, r);
    GenerateOptions g = o.generate;
    g.first = ph.first;
    g.last = ph.last;
    std::vector<CrashState> states = generate_states(log, g);
    const std::optional<Rerun> rerun =
        o.rerun_every ? rerun_for_phase(ph.name, o.bundle, o.delta) : std::nullopt;
    const size_t step =
        o.limit && states.size() > o.limit ? (states.size() + o.limit - 1) / o.limit : 1;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < states.size(); i += step) {
      const CrashState& s = states[i];
      const bool data = o.data_every <= 1 || (i / step) % o.data_every == 0;
      r.data_checked += data ? 1 : 0;
      Verdict v = checker.check(s, data);
      if (rerun && (i / step) % o.rerun_every == 0) {
        ++r.reruns;
        if (v.esp_repaired) {  // first on the ESP as the cut left it: osup refuses, or works
          bool refused = false;
          checker.write_disk_image(o.rerun_image, false);
          const std::string err =
              rerun_error(o.rerun_image, *rerun, o.osup_exe, o.keys_dir, checker.trust(),
                          checker.base_loader_files(), true, &refused);
          if (!err.empty()) v.failures.push_back(err);
          r.refused += refused ? 1 : 0;
        }
        checker.write_disk_image(o.rerun_image, true);  // then as the boot's fsck leaves it
        const std::string err = rerun_error(o.rerun_image, *rerun, o.osup_exe, o.keys_dir,
                                            checker.trust(), checker.base_loader_files());
        if (!err.empty()) v.failures.push_back(err);
        std::filesystem::remove(o.rerun_image);
      }
      if (o.dump_every && (i / step) % o.dump_every == 0) dump_state(checker, o, ph, i, s, v);
      r.esp_repaired += v.esp_repaired ? 1 : 0;
      ++r.states[static_cast<int>(s.kind)];
      (v.boots == layout::Slot::a   ? r.boots_a
       : v.boots == layout::Slot::b ? r.boots_b
                                    : r.boots_none)++;
      if (!v.failures.empty()) r.failures.emplace_back(s.describe(), join(v.failures));
      if (progress && (i / step) % 200 == 0)
        *progress << ph.name << ": " << i << "/" << states.size() << " states\n" << std::flush;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    results.push_back(std::move(r));
  }
  return results;
}

void print_summary(std::ostream& out, const std::vector<PhaseResult>& results,
                   const CheckCounts& c) {
  out << std::left << std::setw(14) << "phase" << std::right << std::setw(8) << "writes"
      << std::setw(9) << "MiB" << std::setw(8) << "flushes" << std::setw(8) << "flush"
      << std::setw(8) << "subset" << std::setw(7) << "torn" << std::setw(8) << "boot a"
      << std::setw(8) << "boot b" << std::setw(6) << "none" << std::setw(8) << "e2fsck"
      << std::setw(8) << "ESPfix" << std::setw(7) << "rerun" << std::setw(8) << "refused"
      << std::setw(8) << "failed" << std::setw(10) << "ms/state"
      << "\n";
  size_t total = 0, failed = 0;
  double seconds = 0;
  for (const PhaseResult& r : results) {
    const size_t n = r.states[0] + r.states[1] + r.states[2];
    total += n, failed += r.failures.size(), seconds += r.seconds;
    out << std::left << std::setw(14) << r.phase.name << std::right << std::setw(8) << r.writes
        << std::setw(9) << std::fixed << std::setprecision(1) << r.bytes_written / 1048576.0
        << std::setw(8) << r.flushes << std::setw(8) << r.states[0] << std::setw(8) << r.states[1]
        << std::setw(7) << r.states[2] << std::setw(8) << r.boots_a << std::setw(8) << r.boots_b
        << std::setw(6) << r.boots_none << std::setw(8) << r.data_checked << std::setw(8)
        << r.esp_repaired << std::setw(7) << r.reruns << std::setw(8) << r.refused << std::setw(8)
        << r.failures.size() << std::setw(10) << std::setprecision(1)
        << (n ? 1000.0 * r.seconds / static_cast<double>(n) : 0.0) << "\n";
  }
  out << "states " << total << ", failed " << failed << ", " << std::setprecision(0) << seconds
      << " s; distinct regions checked: GPT " << c.gpt << ", ESP " << c.esp << ", slot roots "
      << c.roots << ", data " << c.data << "; ESPs repaired by fsck.vfat -a " << c.esp_repaired
      << "\n";
  std::map<std::string, std::pair<size_t, std::string>> by_reason;  // count, first states
  for (const PhaseResult& r : results)
    for (const auto& [state, why] : r.failures) {
      auto& seen = by_reason[r.phase.name + ": " + why];
      if (seen.first++ < 5) seen.second += (seen.second.empty() ? "" : ", ") + state;
    }
  for (const auto& [why, seen] : by_reason)
    out << "FAIL x" << seen.first << " (" << seen.second << (seen.first > 5 ? ", ..." : "")
        << "): " << why << "\n";
}

}  // namespace osup::powerloss
