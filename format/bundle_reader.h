// Reads an update bundle (format/bundle.h) from any ByteSource: signature first, then each
// payload checked (size and sha256) as it streams past. The updater's side.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "base/byte_source.h"
#include "format/bundle.h"
#include "format/manifest.h"
#include "format/signature.h"

namespace osup {

class BundleReader {
 public:
  // Reads from `source`, which must outlive the reader.
  explicit BundleReader(ByteSource& source);
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
  // Whether the current payload is read with read_at straight from the source into the
  // caller's buffer (uncompressed payloads of a random-access source; not from a pipe).
  [[nodiscard]] bool reads_in_place() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace osup
