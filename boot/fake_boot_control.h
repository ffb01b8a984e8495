// An in-memory BootControl for unit tests of the install logic (after update_engine's
// fake_boot_control.h). It follows the same rules as the real backends (generations,
// tries, the loader's pick) and can fail the Nth mutating call, for fault injection.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "base/error.h"
#include "boot/boot_control.h"

namespace osup {

class FakeBootControl final : public BootControl {
 public:
  struct Entry {
    bool present = false;
    EntrySpec spec;
    SlotBoot boot;
  };

  [[nodiscard]] std::string name() const override { return "fake"; }

  [[nodiscard]] SlotBoot slot(layout::Slot s) const override {
    const Entry& e = at(s);
    if (!e.present) {
      SlotBoot b;
      b.slot = s;
      return b;
    }
    return e.boot;
  }

  // Like the loaders: the highest generation that is good or trying, else any entry.
  [[nodiscard]] std::optional<layout::Slot> next_boot() const override {
    std::optional<layout::Slot> best, any;
    for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) {
      const Entry& e = at(s);
      if (!e.present) continue;
      if (!any || e.boot.generation > at(*any).boot.generation) any = s;
      if (e.boot.state == SlotState::bad) continue;
      if (!best || e.boot.generation > at(*best).boot.generation) best = s;
    }
    return best ? best : any;
  }

  void disable(layout::Slot s) override {
    mutate("disable", s);
    at(s) = Entry{};
  }

  void install(layout::Slot s, const EntrySpec& spec) override {
    check_entry_spec(spec);
    mutate("install", s);
    Entry& e = at(s);
    e.present = true;
    e.spec = spec;
    e.boot =
        SlotBoot{s, SlotState::trying, spec.tries, 0, next_generation(), spec.title, spec.version};
  }

  void make_first(layout::Slot s) override {
    require(s, "make first");
    mutate("make_first", s);
    at(s).boot.generation = next_generation();
    at(s).boot.state = SlotState::good;
    at(s).boot.tries_left = at(s).boot.tries_done = 0;
  }

  void mark_good(layout::Slot s) override {
    require(s, "mark good");
    mutate("mark_good", s);
    at(s).boot.state = SlotState::good;
    at(s).boot.tries_left = at(s).boot.tries_done = 0;
  }

  void mark_bad(layout::Slot s) override {
    require(s, "mark bad");
    mutate("mark_bad", s);
    at(s).boot.state = SlotState::bad;
    at(s).boot.tries_left = 0;
  }

  // One simulated boot: picks like next_boot() and spends a try of a trying slot.
  std::optional<layout::Slot> simulate_boot() {
    auto s = next_boot();
    if (s && at(*s).boot.state == SlotState::trying) {
      SlotBoot& b = at(*s).boot;
      --b.tries_left;
      ++b.tries_done;
      if (b.tries_left == 0) b.state = SlotState::bad;
    }
    return s;
  }

  // The Nth mutating call from now (1 = the next one) throws instead of changing anything.
  void fail_at_call(int n) { fail_at_ = calls_ + n; }
  [[nodiscard]] int mutating_calls() const { return calls_; }
  // "install b", "mark_good a", ... in call order (failed calls included).
  [[nodiscard]] const std::vector<std::string>& log() const { return log_; }
  [[nodiscard]] const Entry& entry(layout::Slot s) const { return at(s); }

 private:
  Entry& at(layout::Slot s) { return entries_[s == layout::Slot::a ? 0 : 1]; }
  const Entry& at(layout::Slot s) const { return entries_[s == layout::Slot::a ? 0 : 1]; }

  uint64_t next_generation() const {
    return std::max(at(layout::Slot::a).boot.generation, at(layout::Slot::b).boot.generation) + 1;
  }

  void require(layout::Slot s, const char* action) const {
    if (!at(s).present)
      fail(std::string("cannot ") + action + " slot " + layout::slot_char(s) +
           ": it has no boot entry");
  }

  void mutate(const char* op, layout::Slot s) {
    ++calls_;
    log_.push_back(std::string(op) + " " + layout::slot_char(s));
    if (calls_ == fail_at_)
      fail(std::string("injected failure at boot-control call ") + std::to_string(calls_) + " (" +
           op + ")");
  }

  std::array<Entry, 2> entries_{};
  int calls_ = 0, fail_at_ = -1;
  std::vector<std::string> log_;
};

}  // namespace osup
