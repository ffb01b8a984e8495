// Makes a delta (format/delta.h) from one release's bundle files to the next.
#pragma once

#include <cstdint>
#include <string>

#include "builder/publish/bundle_files.h"

namespace osup::build {

struct DeltaStats {
  uint64_t bytes = 0;  // size of the delta file
  uint64_t copy_blocks = 0, literal_blocks = 0, zero_blocks = 0;
  double seconds = 0;
};

// Writes the delta that turns `from` into `to` at out_path (replaced atomically).
DeltaStats make_delta(const BundleFiles& from, const BundleFiles& to, const std::string& out_path);

}  // namespace osup::build
