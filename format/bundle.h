// The update bundle: a tar stream of manifest.json, manifest.json.sig, then the payloads in
// the manifest's order, each zstd-compressed unless its compression is "none". The reader
// works on a pipe (`osup switch -`) with small, constant memory whatever the payload size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "format/manifest.h"
#include "format/signature.h"

namespace osup {

class Progress;

constexpr const char* kManifestEntry = "manifest.json";
constexpr const char* kSignatureEntry = "manifest.json.sig";
constexpr size_t kMaxManifestSize = 1 << 20;  // a real manifest is ~2 KiB
constexpr size_t kMaxSignatureSize = 64 << 10;

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
[[nodiscard]] Payload describe_payload(std::string name, std::string file, const std::string& path,
                                       bool compress);

class BundleReader {
 public:
  // fd: a file or a pipe, not owned; source_name for messages ("-" = stdin).
  BundleReader(int fd, std::string source_name);
  ~BundleReader();
  BundleReader(const BundleReader&) = delete;
  BundleReader& operator=(const BundleReader&) = delete;

  // Reads manifest.json and manifest.json.sig, which must be the first two entries.
  void read_header();
  [[nodiscard]] const std::string& manifest_bytes() const;
  [[nodiscard]] const std::string& signature() const;

  // Checks the signature over the exact manifest bytes, then parses them. Reads the header
  // first if needed. The signer's key id goes to *signer_key_id when given.
  const Manifest& verify(const sig::TrustStore& trust, std::string* signer_key_id = nullptr);
  // The manifest without checking its signature: for inspect/info only.
  [[nodiscard]] Manifest parse_unverified() const;

  // The next payload (only after verify()), or nullptr at the end of the stream once every
  // payload was seen. A payload not read to its end is read (and checked) first.
  const Payload* next_payload();
  // Uncompressed bytes of the current payload; 0 at its end, by which point its size and
  // sha256 have been checked.
  size_t read(std::span<std::byte> buf);
  // Hands the integrity check of the current payload to the caller: its sha256 is then not
  // computed (its size still is checked). Only for a payload the caller verifies by other
  // means tied to the signed manifest, e.g. the root image, whose every block is checked
  // against the verity tree of the signed root hash. Resets at the next payload.
  void skip_sha256_for_current();
  // Whether the current payload is read with pread straight from the bundle file into the
  // caller's buffer (uncompressed payloads of a bundle file; not from a pipe).
  [[nodiscard]] bool reads_in_place() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace osup
