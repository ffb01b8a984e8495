// Writes an update bundle (format/bundle.h) the updater accepts: the builder's side.
#pragma once

#include <memory>
#include <string>

#include "format/bundle.h"
#include "format/manifest.h"

namespace osup {

class Progress;

class BundleWriter {
 public:
  // Writes OUT.tmp and renames it to OUT at finish(); an unfinished bundle is removed.
  explicit BundleWriter(const std::string& out_path);
  ~BundleWriter();
  BundleWriter(const BundleWriter&) = delete;
  BundleWriter& operator=(const BundleWriter&) = delete;

  // The manifest (exact signed bytes, parsed to check what follows) and its signature.
  void write_header(const std::string& manifest_json, const std::string& signature);
  // p must be the next payload of the manifest; the source's size and sha256 are checked
  // against it while it is written. zstd_level: 1..19 (higher needs too much reader memory).
  void add_payload(const Payload& p, const std::string& source_path, int zstd_level = 3,
                   Progress* progress = nullptr);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Size and sha256 of a file as a payload description; the builder signs these.
[[nodiscard]] Payload describe_payload(PayloadKind kind, std::string file, const std::string& path,
                                       Compression compression);

}  // namespace osup
