// A bundle taken apart into files, for making deltas: its signed manifest and signature
// as they are, and each payload uncompressed (checked against the manifest on the way).
#pragma once

#include <map>
#include <string>

#include "format/manifest.h"
#include "format/signature.h"

namespace osup::build {

struct BundleFiles {
  Manifest manifest;
  std::string manifest_bytes, signature;
  std::map<PayloadKind, std::string> paths;  // payload kind -> file under the directory
};

// Reads `bundle`, verifies its signature against `trust`, writes the payloads into `dir`.
[[nodiscard]] BundleFiles extract_bundle(const std::string& bundle, const sig::TrustStore& trust,
                                         const std::string& dir);

}  // namespace osup::build
