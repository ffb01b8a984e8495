#include "format/initrd_pack.h"

#include <zstd.h>

#include <cstring>
#include <memory>
#include <string_view>

#include "base/error.h"
#include "base/mapped_file.h"

namespace osup::initrd {
namespace {

constexpr size_t kCpioHeader = 110;  // newc: "070701" and 13 eight-digit hex fields

std::string_view text(std::span<const std::byte> b, size_t at, size_t n) {
  return {reinterpret_cast<const char*>(b.data()) + at, n};
}

std::optional<uint64_t> hex_field(std::span<const std::byte> b, size_t at) {
  uint64_t v = 0;
  for (char c : text(b, at, 8)) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return std::nullopt;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  return v;
}

size_t align4(size_t n) { return (n + 3) & ~size_t{3}; }

}  // namespace

bool is_raw_cpio(std::span<const std::byte> file) {
  return file.size() >= kCpioHeader && text(file, 0, 6) == "070701";
}

size_t early_cpio_end(std::span<const std::byte> raw) {
  size_t at = 0;
  bool early = false;
  while (at + kCpioHeader <= raw.size() && text(raw, at, 6) == "070701") {
    const auto file_size = hex_field(raw, at + 54), name_size = hex_field(raw, at + 94);
    if (!file_size || !name_size || *name_size == 0) return 0;
    const size_t name_at = at + kCpioHeader;
    if (name_at + *name_size > raw.size()) return 0;
    const std::string_view name = text(raw, name_at, *name_size - 1);
    const size_t data_at = align4(name_at + *name_size);
    at = align4(data_at + *file_size);
    if (at > raw.size()) return 0;
    if (name == "early_cpio") early = true;
    if (name == "TRAILER!!!") {
      if (!early) return 0;
      while (at < raw.size() && raw[at] == std::byte{0}) ++at;  // cpio's block padding
      return at & ~size_t{3};
    }
  }
  return 0;
}

size_t pack_bound(std::span<const std::byte> raw) {
  return early_cpio_end(raw) + ZSTD_compressBound(raw.size());
}

size_t pack(std::span<const std::byte> raw, std::span<std::byte> out) {
  const size_t early = early_cpio_end(raw);
  std::memcpy(out.data(), raw.data(), early);
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!c) fail("out of memory for zstd");
  // Fixed parameters, one thread: the same bytes give the same frame on builder and device.
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, kLevel);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1);
  const size_t n = ZSTD_compress2(c.get(), out.data() + early, out.size() - early,
                                  raw.data() + early, raw.size() - early);
  if (ZSTD_isError(n)) fail(std::string("compressing the initrd: ") + ZSTD_getErrorName(n));
  return early + n;
}

std::optional<Packed> parse(std::span<const std::byte> file) {
  Packed p;
  p.early = early_cpio_end(file);
  const std::span<const std::byte> frame = file.subspan(p.early);
  if (frame.size() < 4 || ZSTD_findFrameCompressedSize(frame.data(), frame.size()) != frame.size())
    return std::nullopt;
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) return std::nullopt;
  p.raw_size = p.early + content;
  return p;
}

void unpack(std::span<const std::byte> file, const Packed& p, std::span<std::byte> out) {
  if (out.size() != p.raw_size) fail("initrd unpack: wrong output size");
  std::memcpy(out.data(), file.data(), p.early);
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!d) fail("out of memory for zstd");
  const size_t n = ZSTD_decompressDCtx(d.get(), out.data() + p.early, out.size() - p.early,
                                       file.data() + p.early, file.size() - p.early);
  if (ZSTD_isError(n) || n != out.size() - p.early)
    fail(std::string("the initrd does not decompress: ") +
         (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size"));
}

uint64_t pack_file(const std::string& raw_path, const std::string& out_path) {
  MappedFile raw(raw_path);
  MappedOutputFile out(out_path, pack_bound(raw.bytes()));
  const size_t n = pack(raw.bytes(), out.bytes());
  out.finish(n);
  return n;
}

uint64_t unpack_file(const std::string& packed_path, const Packed& p, const std::string& out_path) {
  MappedFile in(packed_path);
  MappedOutputFile out(out_path, p.raw_size);
  unpack(in.bytes(), p, out.bytes());
  out.finish(p.raw_size);
  return p.raw_size;
}

}  // namespace osup::initrd
