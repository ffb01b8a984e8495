#include "builder/image/bundle_compression.h"

#include <fcntl.h>
#include <zstd.h>

#include <algorithm>
#include <future>
#include <memory>
#include <vector>

#include "base/error.h"
#include "base/fd.h"

namespace osup::build {
namespace {

constexpr uint64_t kSample = 1 << 20;
constexpr uint64_t kSamples = 16;

struct Extent {
  uint64_t offset, size;
};

// Whole 1 MiB pieces of a small file; otherwise kSamples pieces from the first to the last
// MiB, at 4 KiB-aligned offsets (filesystem blocks, so samples do not straddle them).
std::vector<Extent> sample_extents(uint64_t size) {
  std::vector<Extent> out;
  if (size <= kSample * kSamples) {
    for (uint64_t off = 0; off < size; off += kSample)
      out.push_back({off, std::min(kSample, size - off)});
    return out;
  }
  for (uint64_t i = 0; i < kSamples; ++i)
    out.push_back({(size - kSample) * i / (kSamples - 1) / 4096 * 4096, kSample});
  return out;
}

// Compressed bytes of every other extent, starting at `first`.
uint64_t compressed_size(int fd, const std::string& path, const std::vector<Extent>& extents,
                         size_t first, int level) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) fail("out of memory creating a zstd compressor");
  std::vector<std::byte> in(kSample), out(ZSTD_compressBound(kSample));
  uint64_t total = 0;
  for (size_t i = first; i < extents.size(); i += 2) {
    const size_t want = static_cast<size_t>(extents[i].size);
    if (pread_full(fd, std::span(in.data(), want), extents[i].offset, path) != want)
      fail(path + " shrank while its compression was being estimated");
    const size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), in.data(), want, level);
    if (ZSTD_isError(n)) fail("zstd estimate of " + path + ": " + ZSTD_getErrorName(n));
    total += n;
  }
  return total;
}

}  // namespace

BundleCompression parse_bundle_compression(std::string_view text, const std::string& what) {
  if (text == "auto") return BundleCompression::automatic;
  if (text == "zstd") return BundleCompression::zstd;
  if (text == "none") return BundleCompression::none;
  fail(what + ": '" + std::string(text) + "' is not a bundle compression; use auto, zstd or none");
}

const char* to_string(BundleCompression c) {
  switch (c) {
    case BundleCompression::automatic:
      return "auto";
    case BundleCompression::zstd:
      return "zstd";
    case BundleCompression::none:
      return "none";
  }
  return "?";
}

double estimate_zstd_savings(const std::string& path, int level) {
  UniqueFd fd = open_file(path, O_RDONLY);
  const uint64_t size = fd_size(fd.get(), path);
  if (size == 0) return 0;
  const std::vector<Extent> extents = sample_extents(size);
  uint64_t sampled = 0;
  for (const Extent& e : extents) sampled += e.size;
  // Each thread takes every other sample: the sum does not depend on the timing.
  auto odd = std::async(std::launch::async, compressed_size, fd.get(), std::cref(path),
                        std::cref(extents), size_t{1}, level);
  const uint64_t compressed = compressed_size(fd.get(), path, extents, 0, level) + odd.get();
  return 1.0 - static_cast<double>(compressed) / static_cast<double>(sampled);
}

CompressionChoice choose_compression(BundleCompression mode, const std::string& path, int level) {
  if (mode != BundleCompression::automatic) return {mode == BundleCompression::zstd, -1};
  const double savings = estimate_zstd_savings(path, level);
  return {savings >= kAutoMinSavings, savings};
}

}  // namespace osup::build
