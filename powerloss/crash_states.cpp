#include "powerloss/crash_states.h"

#include <algorithm>
#include <random>
#include <set>

namespace osup::powerloss {

const char* to_string(StateKind k) {
  switch (k) {
    case StateKind::flush:
      return "flush";
    case StateKind::subset:
      return "subset";
    case StateKind::torn:
      return "torn";
  }
  return "?";
}

std::string CrashState::describe() const {
  std::string s = std::string(to_string(kind)) + " @" + std::to_string(durable_end);
  if (!extra.empty()) {
    s += " +{";
    for (size_t i = 0; i < extra.size() && i < 6; ++i)
      s += (i ? "," : "") + std::to_string(extra[i]);
    if (extra.size() > 6) s += ",... " + std::to_string(extra.size()) + " writes";
    s += "}";
  }
  if (torn) s += " torn " + std::to_string(torn->entry) + ":" + std::to_string(torn->sectors);
  return s;
}

namespace {

// One interval between flushes: the entries after durable_end up to the next flush.
struct Interval {
  size_t durable_end = 0;      // first entry after the previous flush
  std::vector<size_t> writes;  // write entries until the next flush
};

std::vector<Interval> intervals(const WriteLog& log) {
  std::vector<Interval> out(1);
  const auto& es = log.entries();
  for (size_t i = 0; i < es.size(); ++i) {
    if (es[i].is_flush()) {
      out.push_back(Interval{i + 1, {}});
    } else if (es[i].is_write()) {
      out.back().writes.push_back(i);
    }
  }
  return out;
}

// Random subsets of the first c writes (c random too: the cut may come at any time), FUA
// writes always in (they are durable once complete); every subset at most once.
void add_subsets(const WriteLog& log, const Interval& iv, uint32_t count, std::mt19937_64& rng,
                 std::vector<CrashState>& out) {
  const size_t n = iv.writes.size();
  if (n < 2 || count == 0) return;
  std::set<std::vector<size_t>> seen{{}, iv.writes};  // = the flush states around it
  const bool exhaustive = n < 12 && (1ull << n) - 2 <= count;
  const uint64_t tries = exhaustive ? (1ull << n) : uint64_t{count} * 4;
  for (uint64_t t = 0; t < tries && seen.size() - 2 < count; ++t) {
    std::vector<size_t> pick;
    const size_t cut = exhaustive ? n : std::uniform_int_distribution<size_t>(1, n)(rng);
    for (size_t i = 0; i < cut; ++i) {
      const bool fua = (log.entries()[iv.writes[i]].flags & kFua) != 0;
      const bool in = exhaustive ? ((t >> i) & 1) != 0 : (rng() & 1) != 0;
      if (in || fua) pick.push_back(iv.writes[i]);
    }
    if (seen.insert(pick).second)
      out.push_back(CrashState{StateKind::subset, iv.durable_end, std::move(pick), std::nullopt});
  }
}

// A write cut at an edge of the device's atomic unit (a sector, or a 4 KiB physical
// block), with a random subset of the interval's earlier writes on the disk.
void add_torn(const WriteLog& log, const Interval& iv, uint32_t count, uint64_t unit,
              std::mt19937_64& rng, std::vector<CrashState>& out) {
  auto edges = [&](const LogEntry& e) -> uint64_t {  // unit edges strictly inside the write
    const uint64_t first = (e.sector / unit + 1) * unit, end = e.sector + e.nr_sectors;
    return first < end ? (end - 1 - first) / unit + 1 : 0;
  };
  std::vector<size_t> long_writes;
  for (size_t i = 0; i < iv.writes.size(); ++i)
    if (edges(log.entries()[iv.writes[i]]) > 0) long_writes.push_back(i);
  for (uint32_t t = 0; t < count && !long_writes.empty(); ++t) {
    const size_t w =
        long_writes[std::uniform_int_distribution<size_t>(0, long_writes.size() - 1)(rng)];
    const LogEntry& e = log.entries()[iv.writes[w]];
    CrashState s{StateKind::torn, iv.durable_end, {}, std::nullopt};
    for (size_t i = 0; i < w; ++i)
      if ((rng() & 1) != 0 || (log.entries()[iv.writes[i]].flags & kFua) != 0)
        s.extra.push_back(iv.writes[i]);
    const uint64_t edge = std::uniform_int_distribution<uint64_t>(0, edges(e) - 1)(rng);
    s.torn = TornWrite{iv.writes[w], (e.sector / unit + 1 + edge) * unit - e.sector};
    out.push_back(std::move(s));
  }
}

}  // namespace

std::vector<CrashState> generate_states(const WriteLog& log, const GenerateOptions& o) {
  std::vector<CrashState> out;
  const auto ivs = intervals(log);
  for (size_t k = 0; k < ivs.size(); ++k) {
    const Interval& iv = ivs[k];
    const size_t end = k + 1 < ivs.size() ? ivs[k + 1].durable_end : log.entries().size();
    if (end <= o.first || iv.durable_end >= o.last) continue;
    // The state at this flush (the log's start counts as one), then the interval's own.
    out.push_back(CrashState{StateKind::flush, iv.durable_end, {}, std::nullopt});
    std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ull + k);
    add_subsets(log, iv, o.subsets, rng, out);
    add_torn(log, iv, o.torn, std::max<uint64_t>(o.torn_unit, 1), rng, out);
  }
  // The end of the log when it does not end in a flush: everything written.
  if (!ivs.back().writes.empty() && log.entries().size() <= o.last)
    out.push_back(CrashState{StateKind::flush, log.entries().size(), {}, std::nullopt});
  return out;
}

}  // namespace osup::powerloss
