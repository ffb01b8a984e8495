#include "base/progress.h"

#include <unistd.h>

#include <algorithm>

#include "base/error.h"
#include "base/size.h"

namespace osup {

ProgressMode parse_progress_mode(const std::string& text) {
  if (text == "auto") return ProgressMode::automatic;
  if (text == "bar") return ProgressMode::bar;
  if (text == "json") return ProgressMode::json;
  if (text == "none") return ProgressMode::none;
  fail("--progress: unknown mode '" + text + "'; use auto, bar, json or none");
}

Progress::Progress(std::string label, uint64_t total, ProgressMode mode, FILE* out)
    : label_(std::move(label)), total_(total), mode_(mode), out_(out) {
  if (mode_ == ProgressMode::automatic)
    mode_ = ::isatty(::fileno(out_)) ? ProgressMode::bar : ProgressMode::none;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::advance(uint64_t bytes) { set(done_ + bytes); }

void Progress::set(uint64_t done) {
  done_ = done;
  if (mode_ == ProgressMode::none) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::resume_from(uint64_t done) {
  resumed_ = done;
  set(done);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (mode_ != ProgressMode::none) draw(true);
}

void Progress::draw(bool final) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const uint64_t moved = done_ > resumed_ ? done_ - resumed_ : 0;
  double rate = secs > 0 ? static_cast<double>(moved) / secs : 0;
  double pct =
      total_ ? 100.0 * static_cast<double>(std::min(done_, total_)) / static_cast<double>(total_)
             : 100.0;
  double eta = rate > 0 && total_ > done_ ? static_cast<double>(total_ - done_) / rate : 0;
  if (mode_ == ProgressMode::json) {
    std::fprintf(out_,
                 "{\"label\":\"%s\",\"done\":%llu,\"total\":%llu,\"percent\":%.1f,"
                 "\"bytes_per_second\":%.0f,\"eta_seconds\":%.1f,\"final\":%s}\n",
                 label_.c_str(), static_cast<unsigned long long>(done_),
                 static_cast<unsigned long long>(total_), pct, rate, eta, final ? "true" : "false");
  } else {
    int width = 30;
    int filled = static_cast<int>(pct / 100.0 * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(static_cast<size_t>(width), '.');
    std::fprintf(out_, "\r%-16s [%s] %5.1f%%  %7.1f MB/s  ETA %3.0fs ", label_.c_str(), bar.c_str(),
                 pct, rate / 1e6, eta);
    if (final) std::fprintf(out_, "\n");
  }
  std::fflush(out_);
}

}  // namespace osup
