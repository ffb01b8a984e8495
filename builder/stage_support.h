// Small helpers of the image pipeline (builder/pipeline.cpp): its step log, its stage
// timer and a background removal of the rootfs tree.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "base/progress.h"

namespace osup::build {

// One line per stage on stderr, on a terminal and in logs alike (a CI log of a long build
// shows where it is); `--progress none` and `json` (for programs) leave them out.
class StepLog {
 public:
  explicit StepLog(ProgressMode mode)
      : on_(mode == ProgressMode::bar || mode == ProgressMode::automatic) {}
  void step(const std::string& text) const {
    if (on_) std::fprintf(stderr, "osup-build: %s\n", text.c_str());
  }

 private:
  bool on_;
};

// OSUP_TIMING=1 prints the seconds each stage took (bench/build reports them).
class StageClock {
 public:
  StageClock() : on_(std::getenv("OSUP_TIMING") != nullptr), t_(Clock::now()) {}
  void done(const char* stage) {
    if (!on_) return;
    const auto now = Clock::now();
    std::fprintf(stderr, "osup-build: timing: %-10s %7.3f s\n", stage,
                 std::chrono::duration<double>(now - t_).count());
    t_ = now;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool on_;
  Clock::time_point t_;
};

// Removes a folder on its own thread; the destructor waits. Deleting a 200 MB rootfs copy
// costs a few tenths of a second of kernel time that overlap with hashing and compressing.
class BackgroundRemoval {
 public:
  BackgroundRemoval() = default;
  BackgroundRemoval(const BackgroundRemoval&) = delete;
  BackgroundRemoval& operator=(const BackgroundRemoval&) = delete;
  ~BackgroundRemoval() { wait(); }
  void wait() {
    if (t_.joinable()) t_.join();
  }
  void start(const std::string& dir) {
    t_ = std::thread([dir] {
      std::error_code ec;  // what is left is removed with the workdir at the end
      std::filesystem::remove_all(dir, ec);
    });
  }

 private:
  std::thread t_;
};

void warn(const std::string& text) {
  std::fprintf(stderr, "osup-build: warning: %s\n", text.c_str());
}

std::optional<uint64_t> source_date_epoch() {
  const char* v = std::getenv("SOURCE_DATE_EPOCH");
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (*end) fail("SOURCE_DATE_EPOCH must be a number of seconds, got '" + std::string(v) + "'");
  return n;
}

}  // namespace osup::build
