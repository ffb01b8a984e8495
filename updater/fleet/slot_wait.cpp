#include "updater/fleet/slot_wait.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "base/error.h"

namespace osup::fleet {

std::string busy_line(const SlotRequest& r, const SlotAnswer& a) {
  std::string line;
  if (!a.holders.empty()) {
    line = "all " + std::to_string(r.max) + " reboot slots of group " + r.group + " are taken (by ";
    for (size_t i = 0; i < a.holders.size(); ++i) line += (i ? ", " : "") + a.holders[i];
    line += ")";
  } else {
    line = "no reboot slot of group " + r.group + " is free now";
    if (!a.refusal.empty()) line += " (the server says " + a.refusal + ")";
  }
  return line + "; waiting for one";
}

WaitOutcome wait_for_slot(RebootSlots& slots, const SlotRequest& r, const WaitPolicy& p,
                          const Log& log) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // Jitter keeps a fleet that started together from polling in lockstep.
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>{}(r.machine)));
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  WaitOutcome out;
  double backoff = p.first_backoff_s;
  bool said_waiting = false;
  for (;;) {
    ++out.tries;
    try {
      out.answer = slots.try_acquire(r);
      if (!out.last_error.empty() && log) log("reboot slots reachable again");
      out.last_error.clear();
    } catch (const Error& e) {
      if (out.last_error.empty() && log) log(std::string(e.what()) + "; retrying");
      out.last_error = e.what();
    }
    out.waited_s = std::chrono::duration<double>(clock::now() - t0).count();
    if (out.answer.held || out.waited_s >= p.max_wait_s) return out;
    if (!said_waiting && out.last_error.empty() && log) {
      log(busy_line(r, out.answer));
      said_waiting = true;
    }
    const double left = p.max_wait_s - out.waited_s;
    std::this_thread::sleep_for(
        std::chrono::duration<double>(std::min(left, backoff * jitter(rng))));
    backoff = std::min(backoff * 1.5, p.max_backoff_s);
  }
}

}  // namespace osup::fleet
