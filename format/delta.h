// The delta format (docs/delta.md): a new release expressed against the slot a device
// runs. It carries the release's signed manifest and signature unchanged, so a delta
// installs with the same trust as the full bundle; the rest is instructions:
//   kernel, initrd  "same" (the source's file), "zstd-patch" (a zstd frame that uses the
//                   source's file as its reference prefix) or "zstd-repack" (the same over
//                   the uncompressed content of an osup-packed initrd, repacked on the
//                   device: format/initrd_pack.h)
//   root            operations over 4 KiB blocks (copy N blocks from the source root, take
//                   N literal blocks, N zero blocks), and the literal blocks as one zstd
//                   frame whose reference prefix is a list of the source's blocks (the ones
//                   no copy uses: shifted metadata finds its old bytes there)
//   verity          nothing: the device rebuilds the tree from the new root and it must
//                   chain to the signed root hash
// File: "OSUPDLT1", u32 LE header length, header JSON, then the sections it points at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/manifest.h"

namespace osup::delta {

inline constexpr std::string_view kMagic = "OSUPDLT1";
inline constexpr uint32_t kBlock = 4096;
inline constexpr uint32_t kMaxHeader = 1u << 20;
// Bounds what a device maps as the literal frame's reference (and what a maker indexes).
inline constexpr uint64_t kMaxReferenceBytes = uint64_t{512} << 20;
inline constexpr size_t kMaxReferenceRanges = 16384;  // one mapping each on the device

struct Section {
  uint64_t offset = 0;  // from the end of the header
  uint64_t size = 0;
  bool operator==(const Section&) const = default;
};

enum class FileMethod { same, zstd_patch, zstd_repack };

struct FileDelta {
  PayloadKind kind = PayloadKind::kernel;  // kernel or initrd
  FileMethod method = FileMethod::same;
  std::string source_sha256;  // the source file it needs (hex)
  Section data;               // the zstd frame (not for "same")
  bool operator==(const FileDelta&) const = default;
};

struct Header {
  static constexpr int kFormat = 2;
  int format = kFormat;
  std::string source_version, source_root_hash;  // the slot this applies to
  uint64_t source_root_size = 0;
  Section manifest, signature;  // the release's manifest.json bytes and its signature
  std::vector<FileDelta> files;
  Section root_ops, root_literals;  // zstd frames (RootPlan; the literal blocks)
  // SHA-256 of root_ops then root_literals: catches a damaged delta file before the first
  // write (the result is checked against the signed root hash anyway; a channel's signed
  // index also names the whole file's hash).
  std::string root_sha256;
  uint64_t copy_blocks = 0, literal_blocks = 0, zero_blocks = 0, reference_blocks = 0;

  [[nodiscard]] std::string to_json() const;
  [[nodiscard]] static Header parse(std::string_view json);
  [[nodiscard]] const FileDelta* file(PayloadKind kind) const;
};

// Header length prefix + magic, then the header: what a delta file starts with.
[[nodiscard]] std::string encode_preamble(const Header& h);
// Reads the preamble of a delta file; returns the header and sets *data_start to the
// offset where sections begin. Throws naming `what` for a file that is no delta.
[[nodiscard]] Header read_header(int fd, const std::string& what, uint64_t* data_start);

// ---- the root ----

struct BlockRange {
  uint64_t first = 0, count = 0;
  bool operator==(const BlockRange&) const = default;
};

enum class OpKind : unsigned { copy = 0, literal = 1, zero = 2 };
struct Op {
  OpKind kind = OpKind::copy;
  uint64_t count = 0;   // blocks
  uint64_t source = 0;  // first source block (copy only)
  bool operator==(const Op&) const = default;
};

// How the new root is made: operations in output order, and the source blocks that form
// the literal frame's reference prefix (ascending, not overlapping).
struct RootPlan {
  std::vector<BlockRange> reference;
  std::vector<Op> ops;
};

// What the header and the manifest say a plan must add up to.
struct RootShape {
  uint64_t new_blocks = 0, source_blocks = 0, literal_blocks = 0, reference_blocks = 0;
};

// One zstd frame of LEB128 numbers: the reference ranges (count, then gap and length of
// each), then each operation as count << 2 | kind, a copy followed by its source block.
[[nodiscard]] std::string encode_ops(const RootPlan& plan);
// Checks everything against `shape`: counts, copies and references inside the source.
[[nodiscard]] RootPlan decode_ops(std::span<const std::byte> frame, const RootShape& shape);

// The maker's zstd level for `bytes` of input and reference prefix together: 19 while
// small, lower as it grows (level 19 indexes ~5 MB/s here; a 1 GiB image's worth would
// take many minutes).
[[nodiscard]] int patch_level(uint64_t bytes);

// The literal blocks as one zstd frame with `reference` as its prefix (long matching, a
// window covering both; the level drops for large inputs to bound the maker's time).
[[nodiscard]] std::string compress_literals(std::span<const std::byte> literals,
                                            std::span<const std::byte> reference);
// Single pass into `out` (exactly its size; a mapped file on a device, so zstd keeps its
// history there and needs no window buffer of its own).
void decompress_literals(std::span<const std::byte> frame, std::span<const std::byte> reference,
                         std::span<std::byte> out);

// The source root, as a device sees it: each block checked against the source's tree.
class SourceBlocks {
 public:
  virtual ~SourceBlocks() = default;
  [[nodiscard]] virtual uint64_t block_count() const = 0;
  virtual void read(uint64_t first_block, uint64_t count, std::byte* out) = 0;
  // The blocks of `ranges`, back to back and checked, valid until the next view() call or
  // the end of this object.
  virtual std::span<const std::byte> view(const std::vector<BlockRange>& ranges) = 0;
};

// Produces the new root's bytes in order from a checked plan.
class RootAssembler {
 public:
  RootAssembler(const RootPlan& plan, std::span<const std::byte> literals, SourceBlocks& source);
  // Fills `out` (a multiple of the block size) with the next blocks; short only at the end.
  size_t read(std::span<std::byte> out);

 private:
  const RootPlan& plan_;
  std::span<const std::byte> literals_;
  SourceBlocks& source_;
  size_t op_ = 0;
  uint64_t done_in_op_ = 0, literal_pos_ = 0;
};

}  // namespace osup::delta
