#include "builder/publish/make_delta.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/mapped_file.h"
#include "format/delta.h"
#include "format/initrd_pack.h"
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
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, delta::patch_level(span_bytes)),
             what);
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window), what);
  check_zstd(ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1), what);
  check_zstd(ZSTD_CCtx_refPrefix(cctx, old_file.data(), old_file.size()), what);
  std::string out(ZSTD_compressBound(new_file.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), new_file.data(), new_file.size());
  check_zstd(n, "compressing " + what);
  out.resize(n);
  return out;
}

// Both initrds packed by osup-build (format/initrd_pack.h) and the new one repacks to
// itself here: then the patch runs over the uncompressed content, where a small change
// stays small. Returns the patch, or nothing when the plain patch must do.
std::optional<std::string> repack_patch(std::span<const std::byte> old_file,
                                        std::span<const std::byte> new_file) {
  const auto old_p = initrd::parse(old_file), new_p = initrd::parse(new_file);
  if (!old_p || !new_p) return std::nullopt;
  std::vector<std::byte> old_raw(old_p->raw_size), new_raw(new_p->raw_size);
  initrd::unpack(old_file, *old_p, old_raw);
  initrd::unpack(new_file, *new_p, new_raw);
  std::vector<std::byte> again(initrd::pack_bound(new_raw));
  again.resize(initrd::pack(new_raw, again));
  if (!std::equal(again.begin(), again.end(), new_file.begin(), new_file.end()))
    return std::nullopt;  // packed by another zstd: a device could not rebuild it either
  return zstd_patch(old_raw, new_raw, "initrd");
}

delta::FileDelta file_delta(const BundleFiles& from, const BundleFiles& to, PayloadKind kind,
                            Body& body) {
  const Payload* src = from.manifest.find(kind);
  const Payload* dst = to.manifest.find(kind);
  delta::FileDelta fd;
  fd.kind = kind;
  fd.source_sha256 = src->sha256;
  if (src->sha256 == dst->sha256) return fd;  // method "same"
  MappedFile old_map(from.paths.at(kind)), new_map(to.paths.at(kind));
  std::optional<std::string> patch;
  if (kind == PayloadKind::initrd) patch = repack_patch(old_map.bytes(), new_map.bytes());
  fd.method = patch ? delta::FileMethod::zstd_repack : delta::FileMethod::zstd_patch;
  if (!patch) patch = zstd_patch(old_map.bytes(), new_map.bytes(), to_string(kind));
  fd.data = body.add(*patch);
  return fd;
}

bool all_zero(const std::byte* p) {
  static const std::vector<std::byte> zeros(kBlock);
  return std::memcmp(p, zeros.data(), kBlock) == 0;
}

uint64_t block_key(const std::byte* p) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(p), kBlock));
}

// Appends an operation, merging it into the previous one when it continues it.
void add_op(std::vector<delta::Op>& ops, delta::OpKind kind, uint64_t source) {
  if (!ops.empty()) {
    delta::Op& last = ops.back();
    if (last.kind == kind && (kind != delta::OpKind::copy || last.source + last.count == source)) {
      ++last.count;
      return;
    }
  }
  ops.push_back({kind, 1, source});
}

// The literal frame's reference: old blocks no copy uses (what changed was there before),
// as few ranges as a device can map, at most kMaxReferenceBytes (nearest the start first).
std::vector<delta::BlockRange> reference_ranges(const std::vector<bool>& wanted) {
  std::vector<delta::BlockRange> r;
  for (uint64_t gap_limit = 8;; gap_limit *= 2) {
    r.clear();
    uint64_t total = 0;
    for (uint64_t b = 0; b < wanted.size() && total * kBlock < delta::kMaxReferenceBytes; ++b) {
      if (!wanted[b]) continue;
      if (!r.empty() && b - (r.back().first + r.back().count) <= gap_limit) {
        total += b - (r.back().first + r.back().count) + 1;
        r.back().count = b - r.back().first + 1;
      } else {
        r.push_back({b, 1});
        ++total;
      }
    }
    while (total * kBlock > delta::kMaxReferenceBytes) {  // the last range went past
      const uint64_t over = total - delta::kMaxReferenceBytes / kBlock;
      total -= over;
      r.back().count -= over;
    }
    if (r.size() <= delta::kMaxReferenceRanges) return r;
  }
}

// Every new block is a copy of an equal old block (found by content, wherever it moved),
// a zero block, or a literal. Runs are kept whole: a copy continues where the last one
// ended when the old image has the same block there. Literals are compressed against the
// old blocks no copy used.
void root_delta(const MappedFile& old_img, const MappedFile& new_img, delta::Header& h,
                Body& body) {
  const std::byte* o = old_img.bytes().data();
  const std::byte* n = new_img.bytes().data();
  const uint64_t old_blocks = old_img.size() / kBlock, new_blocks = new_img.size() / kBlock;
  std::unordered_map<uint64_t, uint64_t> where;
  where.reserve(old_blocks);
  for (uint64_t b = 0; b < old_blocks; ++b) where.try_emplace(block_key(o + b * kBlock), b);

  delta::RootPlan plan;
  std::vector<bool> unused(old_blocks, true);
  std::vector<std::byte> literals;
  for (uint64_t b = 0; b < new_blocks; ++b) {
    const std::byte* blk = n + b * kBlock;
    const delta::Op* last = plan.ops.empty() ? nullptr : &plan.ops.back();
    uint64_t src = 0;
    if (last && last->kind == delta::OpKind::copy && last->source + last->count < old_blocks &&
        std::memcmp(o + (last->source + last->count) * kBlock, blk, kBlock) == 0) {
      src = last->source + last->count;
    } else if (all_zero(blk)) {
      add_op(plan.ops, delta::OpKind::zero, 0);
      continue;
    } else if (auto it = where.find(block_key(blk));
               it != where.end() && std::memcmp(o + it->second * kBlock, blk, kBlock) == 0) {
      src = it->second;
    } else {
      add_op(plan.ops, delta::OpKind::literal, 0);
      literals.insert(literals.end(), blk, blk + kBlock);
      continue;
    }
    add_op(plan.ops, delta::OpKind::copy, src);
    unused[src] = false;
  }
  for (uint64_t b = 0; b < old_blocks; ++b)
    if (unused[b] && all_zero(o + b * kBlock)) unused[b] = false;
  if (!literals.empty()) plan.reference = reference_ranges(unused);

  std::vector<std::byte> reference;
  for (const delta::BlockRange& r : plan.reference)
    reference.insert(reference.end(), o + r.first * kBlock, o + (r.first + r.count) * kBlock);
  for (const delta::Op& op : plan.ops)
    (op.kind == delta::OpKind::copy      ? h.copy_blocks
     : op.kind == delta::OpKind::literal ? h.literal_blocks
                                         : h.zero_blocks) += op.count;
  h.reference_blocks = reference.size() / kBlock;

  const std::string ops = delta::encode_ops(plan);
  const std::string lits = delta::compress_literals(literals, reference);
  h.root_ops = body.add(ops);
  h.root_literals = body.add(lits);
  Sha256 sha;
  sha.update(std::as_bytes(std::span(ops)));
  sha.update(std::as_bytes(std::span(lits)));
  h.root_sha256 = to_hex(sha.finish());
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
