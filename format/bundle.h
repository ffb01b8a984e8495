// The update bundle: a tar stream of manifest.json, manifest.json.sig, then the payloads in
// the manifest's order, each zstd-compressed unless its compression is none. Written by
// format/bundle_writer.h, read (from a file, a pipe or any ByteSource) by
// format/bundle_reader.h with small, constant memory whatever the payload size.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct archive;

namespace osup {

constexpr const char* kManifestEntry = "manifest.json";
constexpr const char* kSignatureEntry = "manifest.json.sig";
constexpr size_t kMaxManifestSize = 1 << 20;  // a real manifest is ~2 KiB
constexpr size_t kMaxSignatureSize = 64 << 10;
constexpr int kMaxZstdWindowLog = 23;  // 8 MiB: bounds the reader's zstd memory (level <= 19)

// An entry name (or any text from a bundle) fit for a one-line message, whatever bytes it holds.
[[nodiscard]] std::string printable(std::string_view s);
// libarchive's last error for `a`, lowercased and printable.
[[nodiscard]] std::string archive_message(archive* a);

}  // namespace osup
