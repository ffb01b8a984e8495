#include "updater/delta_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/error.h"
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

VerifiedSlotBlocks::~VerifiedSlotBlocks() = default;

void VerifiedSlotBlocks::read(uint64_t first, uint64_t count, std::byte* out) {
  const size_t bytes = static_cast<size_t>(count) * verity::kBlockSize;
  if (pread_full(fd_.get(), std::span(out, bytes), root_offset_ + first * verity::kBlockSize,
                 name_) != bytes)
    fail(name_ + " ends before block " + std::to_string(first + count));
  digests_.resize(static_cast<size_t>(count) * verity::kDigestSize);
  hasher_->hash(out, count, digests_.data());
  const auto* want =
      reinterpret_cast<const uint8_t*>(level0_->bytes().data()) + first * verity::kDigestSize;
  if (std::memcmp(digests_.data(), want, digests_.size()) == 0) return;
  for (uint64_t i = 0; i < count; ++i)
    if (std::memcmp(digests_.data() + i * verity::kDigestSize, want + i * verity::kDigestSize,
                    verity::kDigestSize) != 0)
      fail("block " + std::to_string(first + i) + " of the running " + name_ +
           " does not match its verity hash; the running slot is damaged, use the full bundle");
}

namespace {

void check_file_sha(const std::string& path, const std::string& want, const std::string& what) {
  if (to_hex(sha256_file(path)) != want) fail(what);
}

}  // namespace

void apply_file_delta(const delta::FileDelta& fd, int delta_fd, uint64_t data_start,
                      const std::string& source, const Payload& want, const std::string& out_path) {
  const std::string kind = to_string(fd.kind);
  check_file_sha(source, fd.source_sha256,
                 "the running slot's " + kind + " is not the one this delta was made from");
  if (fd.method == delta::FileMethod::same) {
    fs::copy_file(source, out_path, fs::copy_options::overwrite_existing);
  } else {
    if (fd.data.size > (uint64_t{1} << 30)) fail("delta " + kind + " section is too large");
    std::string frame(static_cast<size_t>(fd.data.size), '\0');
    if (pread_full(delta_fd, std::as_writable_bytes(std::span(frame)), data_start + fd.data.offset,
                   "delta") != frame.size())
      fail("delta is truncated in its " + kind + " section");
    MappedFile src(source);
    // Decompressed straight into the mapped output file: zstd then keeps its history there,
    // not in a window buffer of its own.
    UniqueFd out = open_file(out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (::ftruncate(out.get(), static_cast<off_t>(want.size)) != 0)
      fail_errno("size " + out_path, errno);
    void* dst = want.size
                    ? ::mmap(nullptr, want.size, PROT_READ | PROT_WRITE, MAP_SHARED, out.get(), 0)
                    : nullptr;
    if (dst == MAP_FAILED) fail_errno("map " + out_path, errno);
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 31);
    ZSTD_DCtx_refPrefix(dctx, src.bytes().data(), src.size());
    size_t n = ZSTD_decompressDCtx(dctx, dst, want.size, frame.data(), frame.size());
    ZSTD_freeDCtx(dctx);
    if (dst) ::munmap(dst, want.size);
    if (ZSTD_isError(n) || n != want.size)
      fail("delta " + kind + " section is corrupt (" +
           (ZSTD_isError(n) ? std::string(ZSTD_getErrorName(n)) : "wrong size") + ")");
  }
  check_file_sha(out_path, want.sha256,
                 "the " + kind + " rebuilt from the delta does not match the signed manifest");
}

}  // namespace osup
