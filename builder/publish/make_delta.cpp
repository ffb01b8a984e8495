#include "builder/publish/make_delta.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/mapped_file.h"
#include "format/delta.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

constexpr size_t kBlock = delta::kBlock;

// Appends sections to the delta's body and remembers where each went.
class Body {
 public:
  explicit Body(const std::string& path)
      : path_(path), fd_(open_file(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}
  delta::Section add(std::span<const std::byte> bytes) {
    delta::Section s{size_, bytes.size()};
    write_all(fd_.get(), bytes, path_);
    size_ += bytes.size();
    return s;
  }
  delta::Section add(std::string_view s) { return add(std::as_bytes(std::span(s))); }
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

void check_zstd(size_t rc, const std::string& what) {
  if (ZSTD_isError(rc)) fail(what + ": " + ZSTD_getErrorName(rc));
}

// The new file as one zstd frame whose reference prefix is the old file: unchanged runs
// become matches into the prefix, so a small change costs little.
std::string zstd_patch(std::span<const std::byte> old_file, std::span<const std::byte> new_file,
                       const std::string& what) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (!cctx) fail("out of memory for zstd");
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> guard(cctx, ZSTD_freeCCtx);
  const uint64_t span_bytes = old_file.size() + new_file.size();
  const int window = std::clamp(static_cast<int>(std::bit_width(span_bytes)), 10, 30);
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 19), what);
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window), what);
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1), what);
  check_zstd(ZSTD_CCtx_refPrefix(cctx, old_file.data(), old_file.size()), what);
  std::string out(ZSTD_compressBound(new_file.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), new_file.data(), new_file.size());
  check_zstd(n, "compressing " + what);
  out.resize(n);
  return out;
}

delta::FileDelta file_delta(const BundleFiles& from, const BundleFiles& to, PayloadKind kind,
                            Body& body) {
  const Payload* src = from.manifest.find(kind);
  const Payload* dst = to.manifest.find(kind);
  delta::FileDelta fd;
  fd.kind = kind;
  fd.source_sha256 = src->sha256;
  if (src->sha256 == dst->sha256) return fd;  // method "same"
  fd.method = delta::FileMethod::zstd_patch;
  MappedFile old_map(from.paths.at(kind)), new_map(to.paths.at(kind));
  fd.data = body.add(zstd_patch(old_map.bytes(), new_map.bytes(), to_string(kind)));
  return fd;
}

bool all_zero(const std::byte* p) {
  static const std::vector<std::byte> zeros(kBlock);
  return std::memcmp(p, zeros.data(), kBlock) == 0;
}

uint64_t block_key(const std::byte* p) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(p), kBlock));
}

// Every new block is a copy of an equal old block (found by content, wherever it moved),
// a zero block, or a literal. Runs are kept whole: a copy continues where the last one
// ended when the old image has the same block there.
void root_delta(const MappedFile& old_img, const MappedFile& new_img, delta::Header& h,
                Body& body) {
  const std::byte* o = old_img.bytes().data();
  const std::byte* n = new_img.bytes().data();
  const uint64_t old_blocks = old_img.size() / kBlock, new_blocks = new_img.size() / kBlock;
  std::unordered_map<uint64_t, uint64_t> where;
  where.reserve(old_blocks);
  for (uint64_t b = 0; b < old_blocks; ++b) where.try_emplace(block_key(o + b * kBlock), b);

  const uint64_t start = body.size();
  Sha256 root_sha;
  delta::RootOpWriter ops([&](std::span<const std::byte> b) {
    root_sha.update(b);
    (void)body.add(b);
  });
  uint64_t run_src = 0, run_len = 0, lit_start = 0, lit_len = 0, zero_len = 0;
  auto flush = [&] {
    ops.copy(run_src, run_len);
    ops.literal(std::span(n + lit_start * kBlock, lit_len * kBlock));
    ops.zero(zero_len);
    h.copy_blocks += run_len;
    h.literal_blocks += lit_len;
    h.zero_blocks += zero_len;
    run_len = lit_len = zero_len = 0;
  };
  for (uint64_t b = 0; b < new_blocks; ++b) {
    const std::byte* blk = n + b * kBlock;
    if (run_len && run_src + run_len < old_blocks &&
        std::memcmp(o + (run_src + run_len) * kBlock, blk, kBlock) == 0) {
      ++run_len;
      continue;
    }
    if (all_zero(blk)) {
      if (run_len || lit_len) flush();
      ++zero_len;
      continue;
    }
    auto it = where.find(block_key(blk));
    if (it != where.end() && std::memcmp(o + it->second * kBlock, blk, kBlock) == 0) {
      if (run_len || lit_len || zero_len) flush();
      run_src = it->second;
      run_len = 1;
      continue;
    }
    if (run_len || zero_len) flush();
    if (lit_len == 0) lit_start = b;
    ++lit_len;
  }
  flush();
  ops.finish();
  h.root = delta::Section{start, body.size() - start};
  h.root_sha256 = to_hex(root_sha.finish());
}

}  // namespace

DeltaStats make_delta(const BundleFiles& from, const BundleFiles& to, const std::string& out_path) {
  return with_context(
      "making the delta " + from.manifest.version + " -> " + to.manifest.version, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        if (from.manifest.arch != to.manifest.arch ||
            from.manifest.compatible != to.manifest.compatible)
          fail("releases differ in arch or compatible string; a delta joins versions of one image");
        delta::Header h;
        h.source_version = from.manifest.version;
        h.source_root_hash = from.manifest.verity.root_hash;
        h.source_root_size = from.manifest.verity.data_size;
        const std::string body_path = out_path + ".body.tmp";
        Body body(body_path);
        h.manifest = body.add(to.manifest_bytes);
        h.signature = body.add(to.signature);
        for (PayloadKind k : {PayloadKind::kernel, PayloadKind::initrd})
          if (to.manifest.find(k) && from.manifest.find(k))
            h.files.push_back(file_delta(from, to, k, body));
          else if (to.manifest.find(k))
            fail("the source release has no " + to_string(k) + "; publish the full bundle only");
        {
          MappedFile old_img(from.paths.at(PayloadKind::root)),
              new_img(to.paths.at(PayloadKind::root));
          root_delta(old_img, new_img, h, body);
        }

        const std::string tmp = out_path + ".tmp";
        {
          UniqueFd out = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
          const std::string pre = delta::encode_preamble(h);
          write_all(out.get(), std::as_bytes(std::span(pre)), tmp);
          std::vector<std::byte> buf(1 << 20);
          for (uint64_t off = 0; off < body.size();) {
            size_t got = pread_full(body.fd(), buf, off, body_path);
            write_all(out.get(), std::span<const std::byte>(buf.data(), got), tmp);
            off += got;
          }
          fsync_fd(out.get(), tmp);
        }
        fs::remove(body_path);
        fs::rename(tmp, out_path);
        DeltaStats st;
        st.bytes = fs::file_size(out_path);
        st.copy_blocks = h.copy_blocks;
        st.literal_blocks = h.literal_blocks;
        st.zero_blocks = h.zero_blocks;
        st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return st;
      });
}

}  // namespace osup::build
