// Progress of long operations: a bar with percent, rate and ETA on a terminal,
// JSON lines for programs (--progress=json), and silence otherwise (scripts, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace osup {

enum class ProgressMode { automatic, bar, json, none };

// "auto" | "bar" | "json" | "none"; throws naming the flag.
[[nodiscard]] ProgressMode parse_progress_mode(const std::string& text);

class Progress {
 public:
  // automatic: a bar when `out` (stderr by default) is a terminal, otherwise nothing.
  Progress(std::string label, uint64_t total, ProgressMode mode = ProgressMode::automatic,
           FILE* out = stderr);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(uint64_t bytes);  // cheap; redraws at most ~10 times a second
  void set(uint64_t done);
  // Bytes that were done before this run (a resumed download): counted as done, left
  // out of the rate and so of the ETA.
  void resume_from(uint64_t done);
  void finish();  // final line; also called by the destructor

 private:
  void draw(bool final);
  std::string label_;
  uint64_t total_, done_ = 0, resumed_ = 0;
  ProgressMode mode_;
  FILE* out_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
};

}  // namespace osup
