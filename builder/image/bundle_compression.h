// Whether the bundle carries the image payloads (verity tree, root) zstd-compressed or as
// they are. zstd makes the bundle smaller, but on the device decompressing costs about as
// much CPU as checking every block against the verity tree, so an install from an
// uncompressed bundle is about twice as fast. "auto" compresses only when it pays.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace osup::build {

enum class BundleCompression { automatic, zstd, none };

inline constexpr int kBundleZstdLevel = 3;  // fast to compress; the reader's window bound holds

// "auto", "zstd" or "none"; `what` names the source in the error ("--bundle-compression").
[[nodiscard]] BundleCompression parse_bundle_compression(std::string_view text,
                                                         const std::string& what);
[[nodiscard]] const char* to_string(BundleCompression c);

// zstd at the bundle's level saves at least this share of a payload, or "auto" ships it
// uncompressed. Measured (bench/README.md): erofs lz4hc roots save 25-29 % (zstd keeps
// paying), roots of already well compressed data (squashfs zstd/xz, media) 0-3 % (not worth
// doubling the install's CPU). 10 % sits between them with room for the estimate's error.
inline constexpr double kAutoMinSavings = 0.10;

// Share of the file's size zstd at `level` would save, estimated by compressing up to 16
// 1 MiB samples spread evenly over it (all of it when smaller), on two threads. Depends on
// the content alone, so reproducible builds make the same choice. Slightly pessimistic:
// samples compressed apart miss matches across them (on an erofs lz4hc root: 27 % estimated,
// 29 % real).
[[nodiscard]] double estimate_zstd_savings(const std::string& path, int level);

struct CompressionChoice {
  bool compress = true;
  double estimated_savings = -1;  // < 0: not estimated (the mode was explicit)
};

// The choice for one payload file: zstd and none as told, automatic by the estimate.
[[nodiscard]] CompressionChoice choose_compression(BundleCompression mode, const std::string& path,
                                                   int level);

}  // namespace osup::build
