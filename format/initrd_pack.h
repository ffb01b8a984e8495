// A delta-friendly initrd. dracut's own compression turns a small content change into a
// wholly different file; instead the builder asks dracut for the uncompressed cpio and
// packs it here with one fixed zstd recipe, so a device can rebuild the exact signed bytes
// from the uncompressed content (the delta's "zstd-repack"; the sha256 check decides).
// Layout: [leading uncompressed early cpio (CPU microcode), if any][one zstd frame].
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace osup::initrd {

// Fast enough to repack on a device under emulation, in a few MiB of memory.
inline constexpr int kLevel = 3;

// True for an uncompressed cpio archive (newc), dracut's --no-compress output.
[[nodiscard]] bool is_raw_cpio(std::span<const std::byte> file);
// Where the part to compress begins: past a leading early cpio (one holding dracut's
// "early_cpio" marker) and its padding, else 0.
[[nodiscard]] size_t early_cpio_end(std::span<const std::byte> raw);

// The packed form of `raw`; written into `out`, which must hold pack_bound() bytes.
[[nodiscard]] size_t pack_bound(std::span<const std::byte> raw);
[[nodiscard]] size_t pack(std::span<const std::byte> raw, std::span<std::byte> out);

struct Packed {
  size_t early = 0;       // leading uncompressed bytes
  uint64_t raw_size = 0;  // early + the frame's content
};
// Recognises a packed initrd (any other file: nullopt).
[[nodiscard]] std::optional<Packed> parse(std::span<const std::byte> file);
// Its uncompressed content; `out` holds exactly p.raw_size bytes.
void unpack(std::span<const std::byte> file, const Packed& p, std::span<std::byte> out);

// File helpers (mapped, not read into memory): packs the raw cpio at `raw_path` into
// `out_path`; unpacks a packed file into `out_path`. Both return the output size.
uint64_t pack_file(const std::string& raw_path, const std::string& out_path);
uint64_t unpack_file(const std::string& packed_path, const Packed& p, const std::string& out_path);

}  // namespace osup::initrd
