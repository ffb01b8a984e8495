// A power-loss campaign: the crash states of a recorded log, per phase (an operation:
// the span of the log it wrote), each checked, with a summary of what booted and why
// any state failed.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "powerloss/crash_check.h"
#include "powerloss/crash_states.h"
#include "powerloss/rerun.h"

namespace osup::powerloss {

struct Phase {
  std::string name;
  size_t first = 0, last = 0;  // log entries [first, last)
};

// Phases from a file of "NAME LOG_SIZE" lines: each phase ends where the log had that
// size (the recorder notes it after the operation); the first starts at the log's start.
// Without a file, one phase "all".
[[nodiscard]] std::vector<Phase> read_phases(const std::string& file, const WriteLog& log);

struct CampaignOptions {
  GenerateOptions generate;
  size_t limit = 0;       // at most this many states per phase, evenly spread (0: all)
  size_t data_every = 1;  // e2fsck the data partition in every Nth state (it costs ~1 s)
  // Rerun the interrupted operation (powerloss/rerun.h) in every Nth state of a phase that
  // has one (0: never): a switch rerun writes a whole slot, seconds per state.
  size_t rerun_every = 0;
  std::string osup_exe, keys_dir, bundle, rerun_image;
  std::string delta;  // the delta the recorded switch-delta installed (its rerun), or ""
  // Write every Nth state of a phase (0: none) out as a whole disk image, the ESP as the
  // cut left it, into dump_dir, with the checker's verdict in dump_dir/verdicts, for
  // booting in QEMU (qemu-tests/powerloss-boot).
  size_t dump_every = 0;
  std::string dump_dir;
};

struct PhaseResult {
  Phase phase;
  size_t writes = 0, flushes = 0;
  uint64_t bytes_written = 0;
  size_t states[3] = {0, 0, 0};  // by StateKind
  size_t boots_a = 0, boots_b = 0, boots_none = 0, data_checked = 0, esp_repaired = 0;
  size_t reruns = 0;   // states where the operation was run again (and had to succeed)
  size_t refused = 0;  // of those on a damaged ESP: osup refused it before fsck.vfat -a
  std::vector<std::pair<std::string, std::string>> failures;  // (state, reasons)
  double seconds = 0;
};

[[nodiscard]] std::vector<PhaseResult> run_campaign(const WriteLog& log, CrashChecker& checker,
                                                    const std::vector<Phase>& phases,
                                                    const CampaignOptions& o,
                                                    std::ostream* progress);

// The table the README quotes, and every failure with its reasons (grouped).
void print_summary(std::ostream& out, const std::vector<PhaseResult>& results,
                   const CheckCounts& c);

}  // namespace osup::powerloss
