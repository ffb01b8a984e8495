#include "updater/delta_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "base/error.h"
#include "format/initrd_pack.h"
#include "format/parallel_hash.h"
#include "format/sha256.h"
#include "format/verity.h"
#include "updater/verify.h"

namespace fs = std::filesystem;

namespace osup {

VerifiedSlotBlocks::VerifiedSlotBlocks(const OsupDisk& disk, layout::Slot s, const Manifest& m)
    : name_(layout::root_label(s)), fd_(open_file(disk.path, O_RDONLY | O_CLOEXEC)) {
  const SlotPartitions& sp = disk.slot(s);
  const verity::Params params = verity_params(m);
  const Digest root = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  with_context("checking the verity tree of " + name_,
               [&] { verity::verify_tree(fd_.get(), params, root, sp.verity.start); });
  root_offset_ = sp.root.start;
  blocks_ = m.verity.data_size / verity::kBlockSize;
  // Level 0 is mapped, not read: its pages are the disk's, whatever the image size.
  level0_ = std::make_unique<MappedFile>(fd_.get(), layout::verity_label(s),
                                         sp.verity.start + verity::level0_offset(params.data_size),
                                         blocks_ * verity::kDigestSize);
  hasher_ = std::make_unique<verity::ParallelHasher>(params.salt);
}

VerifiedSlotBlocks::~VerifiedSlotBlocks() { drop_view(); }

void VerifiedSlotBlocks::check(const std::byte* blocks, uint64_t first, uint64_t count) {
  digests_.resize(static_cast<size_t>(count) * verity::kDigestSize);
  hasher_->hash(blocks, count, digests_.data());
  const auto* want =
      reinterpret_cast<const uint8_t*>(level0_->bytes().data()) + first * verity::kDigestSize;
  if (std::memcmp(digests_.data(), want, digests_.size()) == 0) return;
  for (uint64_t i = 0; i < count; ++i)
    if (std::memcmp(digests_.data() + i * verity::kDigestSize, want + i * verity::kDigestSize,
                    verity::kDigestSize) != 0)
      fail("block " + std::to_string(first + i) + " of the running " + name_ +
           " does not match its verity hash; the running slot is damaged, use the full bundle");
}

void VerifiedSlotBlocks::read(uint64_t first, uint64_t count, std::byte* out) {
  const size_t bytes = static_cast<size_t>(count) * verity::kBlockSize;
  if (pread_full(fd_.get(), std::span(out, bytes), root_offset_ + first * verity::kBlockSize,
                 name_) != bytes)
    fail(name_ + " ends before block " + std::to_string(first + count));
  check(out, first, count);
}

void VerifiedSlotBlocks::drop_view() {
  if (view_) ::munmap(view_, view_size_);
  view_ = nullptr;
  view_size_ = 0;
}

std::span<const std::byte> VerifiedSlotBlocks::view(const std::vector<delta::BlockRange>& ranges) {
  drop_view();
  uint64_t blocks = 0;
  for (const delta::BlockRange& r : ranges) {
    if (r.first > blocks_ || r.count > blocks_ - r.first)
      fail("the delta refers to blocks past the end of the running " + name_);
    blocks += r.count;
  }
  if (blocks == 0) return {};
  view_size_ = static_cast<size_t>(blocks * verity::kBlockSize);
  // One reservation, then each range mapped over its part of it (or read into it).
  view_ = ::mmap(nullptr, view_size_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (view_ == MAP_FAILED) {
    view_ = nullptr;
    fail_errno("reserve " + std::to_string(view_size_) + " bytes of address space", errno);
  }
  auto* base = static_cast<std::byte*>(view_);
  const bool page_sized = ::sysconf(_SC_PAGESIZE) == verity::kBlockSize;
  std::byte* at = base;
  for (const delta::BlockRange& r : ranges) {
    const size_t bytes = static_cast<size_t>(r.count) * verity::kBlockSize;
    const uint64_t offset = root_offset_ + r.first * verity::kBlockSize;
    if (page_sized) {
      if (::mmap(at, bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd_.get(),
                 static_cast<off_t>(offset)) == MAP_FAILED)
        fail_errno("map blocks of the running " + name_, errno);
    } else if (pread_full(fd_.get(), std::span(at, bytes), offset, name_) != bytes) {
      fail(name_ + " ends before block " + std::to_string(r.first + r.count));
    }
    // Checked in slices, so the digests stay small whatever the view's size.
    for (uint64_t done = 0; done < r.count;) {
      const uint64_t n = std::min<uint64_t>(r.count - done, 4096);
      check(at + done * verity::kBlockSize, r.first + done, n);
      done += n;
    }
    at += bytes;
  }
  return {base, view_size_};
}

namespace {

void check_file_sha(const std::string& path, const std::string& want, const std::string& what) {
  if (to_hex(sha256_file(path)) != want) fail(what);
}

}  // namespace

void apply_file_delta(const delta::FileDelta& fd, int delta_fd, uint64_t data_start,
                      const std::string& source, const Payload& want, const std::string& out_path,
                      const std::string& tmp) {
  const std::string kind = to_string(fd.kind);
  check_file_sha(source, fd.source_sha256,
                 "the running slot's " + kind + " is not the one this delta was made from");
  if (fd.method == delta::FileMethod::same) {
    fs::copy_file(source, out_path, fs::copy_options::overwrite_existing);
  } else {
    if (fd.data.size > (uint64_t{1} << 30)) fail("delta " + kind + " section is too large");
    MappedFile frame(delta_fd, "delta", data_start + fd.data.offset, fd.data.size);
    if (frame.size() != fd.data.size) fail("delta is truncated in its " + kind + " section");
    // A packed initrd is patched as its uncompressed content, then packed again.
    const bool repack = fd.method == delta::FileMethod::zstd_repack;
    std::string prefix_path = source;
    uint64_t out_size = want.size;
    if (repack) {
      std::optional<initrd::Packed> old_packed = initrd::parse(MappedFile(source).bytes());
      if (!old_packed) fail("the running slot's initrd is not packed by osup; use the full bundle");
      prefix_path = tmp + "/source-raw";
      (void)initrd::unpack_file(source, *old_packed, prefix_path);
      const unsigned long long n = ZSTD_getFrameContentSize(frame.bytes().data(), frame.size());
      if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > (uint64_t{4} << 30))
        fail("delta " + kind + " section is corrupt (no zstd frame of known size)");
      out_size = n;
    }
    const std::string patched = repack ? tmp + "/new-raw" : out_path;
    {
      MappedFile prefix(prefix_path);
      // Decompressed straight into the mapped output file: zstd then keeps its history
      // there, not in a window buffer of its own.
      MappedOutputFile out(patched, out_size);
      std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d(ZSTD_createDCtx(), ZSTD_freeDCtx);
      if (!d) fail("out of memory for zstd");
      ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, 31);
      ZSTD_DCtx_refPrefix(d.get(), prefix.bytes().data(), prefix.size());
      const size_t n = ZSTD_decompressDCtx(d.get(), out.bytes().data(), out_size,
                                           frame.bytes().data(), frame.size());
      if (ZSTD_isError(n) || n != out_size)
        fail("delta " + kind + " section is corrupt (" +
             (ZSTD_isError(n) ? std::string(ZSTD_getErrorName(n)) : "wrong size") + ")");
      out.finish(out_size);
    }
    if (repack) (void)initrd::pack_file(patched, out_path);
  }
  check_file_sha(out_path, want.sha256,
                 "the " + kind + " rebuilt from the delta does not match the signed manifest" +
                     (fd.method == delta::FileMethod::zstd_repack
                          ? " (packed by another zstd version?); use the full bundle"
                          : ""));
}

}  // namespace osup
