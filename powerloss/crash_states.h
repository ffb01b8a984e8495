// Crash states from a write log: which of the recorded writes a disk may hold after a
// power cut. Everything before a flush is on the disk; of the writes issued since the
// last flush, any subset may be (a disk cache reorders freely), and one write may be
// torn (a sector-aligned prefix of it reached the medium).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "powerloss/write_log.h"

namespace osup::powerloss {

enum class StateKind { flush, subset, torn };
[[nodiscard]] const char* to_string(StateKind k);

struct TornWrite {
  size_t entry = 0;      // the write that was cut
  uint64_t sectors = 0;  // how many of its first sectors reached the disk (1..nr_sectors-1)
};

struct CrashState {
  StateKind kind = StateKind::flush;
  size_t durable_end = 0;         // entries [0, durable_end) are all on the disk
  std::vector<size_t> extra;      // later write entries that also are, in log order
  std::optional<TornWrite> torn;  // applied after them
  [[nodiscard]] std::string describe() const;
};

struct GenerateOptions {
  uint32_t subsets = 8;    // random subsets per flush interval (all of them when fewer exist)
  uint32_t torn = 2;       // torn writes per flush interval
  uint32_t torn_unit = 1;  // sectors a device writes atomically: tears fall on their edges
  uint64_t seed = 1;
  size_t first = 0, last = SIZE_MAX;  // only intervals with writes in entries [first, last)
};

// States in order of durable_end (so an overlay can move forward through them): the
// state after every flush in range, then per interval between two flushes the random
// subsets and torn writes. Reproducible: interval k draws from seed and k alone.
[[nodiscard]] std::vector<CrashState> generate_states(const WriteLog& log,
                                                      const GenerateOptions& o);

}  // namespace osup::powerloss
