// A tool that ran out of space says so in its own words somewhere in its output (restic,
// flatpak and podman all pass ENOSPC's text through); osup turns that into one line that
// says which disk is full and that the next run finishes the job.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>

namespace osup::machine {

[[nodiscard]] inline bool says_disk_full(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // flatpak checks before it writes: "Not enough disk space to complete this operation".
  return text.find("no space left on device") != std::string::npos ||
         text.find("not enough disk space") != std::string::npos;
}

}  // namespace osup::machine
