// The delta format (docs/delta.md): a new release expressed against the slot a device
// runs. It carries the release's signed manifest and signature unchanged, so a delta
// installs with the same trust as the full bundle; the rest is instructions:
//   kernel, initrd  "same" (the source's file) or "zstd-patch" (a zstd frame that uses
//                   the source's file as its reference prefix)
//   root            a zstd stream of block operations: copy N blocks from the source root,
//                   N literal blocks, N zero blocks (4 KiB blocks)
//   verity          nothing: the device rebuilds the tree from the new root and it must
//                   chain to the signed root hash
// File: "OSUPDLT1", u32 LE header length, header JSON, then the sections it points at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/manifest.h"

namespace osup::delta {

inline constexpr std::string_view kMagic = "OSUPDLT1";
inline constexpr uint32_t kBlock = 4096;
inline constexpr uint32_t kMaxHeader = 1u << 20;

struct Section {
  uint64_t offset = 0;  // from the end of the header
  uint64_t size = 0;
  bool operator==(const Section&) const = default;
};

enum class FileMethod { same, zstd_patch };

struct FileDelta {
  PayloadKind kind = PayloadKind::kernel;  // kernel or initrd
  FileMethod method = FileMethod::same;
  std::string source_sha256;  // the source file it needs (hex)
  Section data;               // the zstd frame (zstd_patch only)
  bool operator==(const FileDelta&) const = default;
};

struct Header {
  static constexpr int kFormat = 1;
  int format = kFormat;
  std::string source_version, source_root_hash;  // the slot this applies to
  uint64_t source_root_size = 0;
  Section manifest, signature;  // the release's manifest.json bytes and its signature
  std::vector<FileDelta> files;
  Section root;  // zstd stream of block operations
  // SHA-256 of the root section: catches a damaged delta file before the first write (the
  // result is checked against the signed root hash anyway; a channel's signed index also
  // names the whole file's hash).
  std::string root_sha256;
  uint64_t copy_blocks = 0, literal_blocks = 0, zero_blocks = 0;  // for reports

  [[nodiscard]] std::string to_json() const;
  [[nodiscard]] static Header parse(std::string_view json);
  [[nodiscard]] const FileDelta* file(PayloadKind kind) const;
};

// Header length prefix + magic, then the header: what a delta file starts with.
[[nodiscard]] std::string encode_preamble(const Header& h);
// Reads the preamble of a delta file; returns the header and sets *data_start to the
// offset where sections begin. Throws naming `what` for a file that is no delta.
[[nodiscard]] Header read_header(int fd, const std::string& what, uint64_t* data_start);

// Writes the root's block operations as one zstd stream (level 19, long matching within a
// 16 MiB window: literal blocks of one update resemble each other).
class RootOpWriter {
 public:
  explicit RootOpWriter(std::function<void(std::span<const std::byte>)> sink, int level = 19);
  ~RootOpWriter();
  RootOpWriter(const RootOpWriter&) = delete;
  RootOpWriter& operator=(const RootOpWriter&) = delete;
  void copy(uint64_t source_block, uint64_t count);
  void literal(std::span<const std::byte> blocks);  // whole blocks
  void zero(uint64_t count);
  void finish();

 private:
  void put_op(uint64_t count, unsigned op);
  void put(std::span<const std::byte> bytes);
  void put_varint(uint64_t v);
  void flush(bool end);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads source blocks for copies; the device verifies each against the source's tree.
class SourceBlocks {
 public:
  virtual ~SourceBlocks() = default;
  [[nodiscard]] virtual uint64_t block_count() const = 0;
  virtual void read(uint64_t first_block, uint64_t count, std::byte* out) = 0;
};

// Turns the operation stream back into the new root's bytes, in order.
class RootOpReader {
 public:
  // `input` returns compressed bytes (0 at the end); output is `total_blocks` blocks.
  RootOpReader(std::function<size_t(std::span<std::byte>)> input, SourceBlocks& source,
               uint64_t total_blocks);
  ~RootOpReader();
  RootOpReader(const RootOpReader&) = delete;
  RootOpReader& operator=(const RootOpReader&) = delete;
  // Fills `out` (a multiple of the block size) with the next blocks; short only at the end.
  size_t read(std::span<std::byte> out);

 private:
  bool next_op();
  size_t take(std::byte* out, size_t n, bool must);
  uint64_t get_varint();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace osup::delta
