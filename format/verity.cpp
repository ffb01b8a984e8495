#include "format/verity.h"

#include <fcntl.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "base/error.h"
#include "base/fd.h"
#include "format/block_hash.h"
#include "format/parallel_hash.h"
#include "format/verity_geometry.h"

namespace osup::verity {
namespace {

constexpr size_t kSuperblockSize = 512;
constexpr size_t kReadChunk = 16u << 20;  // data read per step in build/verify

Digest hash_one(std::span<const uint8_t> salt, const std::byte* block) {
  Digest d{};
  BlockHash(salt, kBlockSize).hash(block, d.data());
  return d;
}

// --- superblock -------------------------------------------------------------------------

// Offsets in veritysetup's 512-byte `struct verity_sb` (all integers little-endian).
namespace sb {
constexpr size_t signature = 0, version = 8, hash_type = 12, uuid = 16, algorithm = 32,
                 data_block_size = 64, hash_block_size = 68, data_blocks = 72, salt_size = 80,
                 salt = 88;
constexpr char kSignature[8] = {'v', 'e', 'r', 'i', 't', 'y', 0, 0};
constexpr char kAlgorithm[] = "sha256";
}  // namespace sb

template <class T>
void put_le(uint8_t* at, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) at[i] = static_cast<uint8_t>(value >> (8 * i));
}
template <class T>
T get_le(const uint8_t* at) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(at[i]) << (8 * i);
  return v;
}

// The whole first hash block: superblock then zeros up to the tree.
std::vector<std::byte> encode_superblock(const Params& p) {
  std::vector<std::byte> block(kBlockSize);
  auto* b = reinterpret_cast<uint8_t*>(block.data());
  std::memcpy(b + sb::signature, sb::kSignature, sizeof sb::kSignature);
  put_le<uint32_t>(b + sb::version, 1);
  put_le<uint32_t>(b + sb::hash_type, 1);
  std::memcpy(b + sb::uuid, p.uuid.bytes.data(), 16);
  std::memcpy(b + sb::algorithm, sb::kAlgorithm, sizeof sb::kAlgorithm - 1);
  put_le<uint32_t>(b + sb::data_block_size, kBlockSize);
  put_le<uint32_t>(b + sb::hash_block_size, kBlockSize);
  put_le<uint64_t>(b + sb::data_blocks, p.data_size / kBlockSize);
  put_le<uint16_t>(b + sb::salt_size, static_cast<uint16_t>(p.salt.size()));
  std::memcpy(b + sb::salt, p.salt.data(), p.salt.size());
  return block;
}

std::string describe_params(const Params& p) {
  return "data size " + std::to_string(p.data_size) + ", salt " + to_hex(p.salt) + ", uuid " +
         p.uuid.str();
}

}  // namespace

// --- public API -----------------------------------------------------------------------

Params make_params(uint64_t data_size, std::string_view seed) {
  (void)checked_blocks(data_size);
  Params p;
  p.data_size = data_size;
  if (seed.empty()) {
    p.salt.resize(kDigestSize);
    if (RAND_bytes(p.salt.data(), static_cast<int>(p.salt.size())) != 1)
      fail("cannot read random bytes for a dm-verity salt");
    p.uuid = Uuid::random();
  } else {
    Sha256 h;
    h.update(seed);
    h.update("/verity-salt");
    Digest d = h.finish();
    p.salt.assign(d.begin(), d.end());
    p.uuid = Uuid::derived(seed, "verity-superblock");
  }
  return p;
}

uint64_t hash_device_size(uint64_t data_size) {
  uint64_t size = kTreeOffset;
  for (const Level& l : tree_levels(checked_blocks(data_size))) size += l.blocks * kBlockSize;
  return size;
}

uint64_t level0_offset(uint64_t data_size) {
  const std::vector<Level> levels = tree_levels(checked_blocks(data_size));
  if (levels.empty()) fail("a one-block image has no level 0 on its hash device");
  return levels[0].offset;
}

namespace {

uint64_t padded(uint64_t digests) {  // a level's bytes: its digests padded to whole blocks
  return (digests * kDigestSize + kBlockSize - 1) / kBlockSize * kBlockSize;
}

// Level 0 is the packed digests of the data blocks (128 fill a hash block exactly). It goes
// to the hash device chunk by chunk, so 8 MiB per GiB of data need not be in memory, while
// the next chunk is read. Returns the one digest of a one-block image (no level 0).
Digest stream_level0(int data_fd, int hash_fd, const Params& p, ParallelHasher& hasher,
                     Progress* progress, uint64_t data_offset, uint64_t level0_at, bool single) {
  std::array<std::vector<std::byte>, 2> bufs;
  for (auto& b : bufs) b.resize(std::min<uint64_t>(kReadChunk, p.data_size));
  auto read_chunk = [&](size_t which, uint64_t offset) {
    std::vector<std::byte>& buf = bufs[which];
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), p.data_size - offset));
    size_t got =
        pread_full(data_fd, std::span(buf.data(), want), data_offset + offset, "verity data");
    if (got != want)
      fail("verity data ends at byte " + std::to_string(offset + got) + " but " +
           std::to_string(p.data_size) + " bytes were to be hashed; is it the right file?");
    return want;
  };
  std::vector<uint8_t> digests;
  Digest only{};
  size_t which = 0;
  std::future<size_t> pending = std::async(std::launch::async, read_chunk, which, uint64_t{0});
  for (uint64_t offset = 0; offset < p.data_size;) {
    size_t n = pending.get();
    uint64_t after = offset + n;
    if (after < p.data_size) pending = std::async(std::launch::async, read_chunk, which ^ 1, after);
    digests.resize(n / kBlockSize * kDigestSize);
    hasher.hash(bufs[which].data(), n / kBlockSize, digests.data());
    if (single)
      std::copy_n(digests.begin(), kDigestSize, only.begin());
    else
      pwrite_all(hash_fd, std::as_bytes(std::span(digests)),
                 level0_at + offset / kBlockSize * kDigestSize, "verity hash device");
    if (progress) progress->advance(n);
    offset = after;
    which ^= 1;
  }
  return only;
}

// Level 1 from level 0 read back (the page cache has it), 4 MiB at a time; with a single
// level, its one block. The levels above are 1/128 of the one below and stay in memory.
std::vector<uint8_t> read_level1(int hash_fd, const std::vector<Level>& levels, uint64_t level0_at,
                                 ParallelHasher& hasher) {
  std::vector<uint8_t> level(levels.size() > 1 ? padded(levels[0].blocks) : kBlockSize);
  std::vector<std::byte> chunk;
  constexpr uint64_t kStep = 1024;
  for (uint64_t first = 0; first < levels[0].blocks; first += kStep) {
    const uint64_t n = std::min(kStep, levels[0].blocks - first);
    chunk.resize(n * kBlockSize);
    if (pread_full(hash_fd, chunk, level0_at + first * kBlockSize, "verity hash device") !=
        chunk.size())
      fail("verity hash device is shorter than its level 0");
    if (levels.size() > 1)
      hasher.hash(chunk.data(), n, level.data() + first * kDigestSize);
    else
      std::memcpy(level.data(), chunk.data(), kBlockSize);
  }
  return level;
}

}  // namespace

Digest build(int data_fd, int hash_fd, const Params& p, Progress* progress, uint64_t data_offset,
             uint64_t hash_offset) {
  const uint64_t data_blocks = checked_blocks(p.data_size);
  check_salt(p);
  const std::vector<Level> levels = tree_levels(data_blocks);
  (void)posix_fadvise(data_fd, static_cast<off_t>(data_offset), static_cast<off_t>(p.data_size),
                      POSIX_FADV_SEQUENTIAL);
  const uint64_t level0_at = hash_offset + (levels.empty() ? 0 : levels[0].offset);
  ParallelHasher hasher(p.salt);
  const Digest only =
      stream_level0(data_fd, hash_fd, p, hasher, progress, data_offset, level0_at, levels.empty());
  // The superblock goes last: a tree is only valid once every level is written.
  auto finish = [&](const Digest& root) {
    pwrite_all(hash_fd, encode_superblock(p), hash_offset, "verity hash device");
    return root;
  };
  if (levels.empty()) return finish(only);
  // The hash device may hold an older tree: level 0's padding is written, not assumed.
  const std::vector<uint8_t> pad(padded(data_blocks) - data_blocks * kDigestSize);
  pwrite_all(hash_fd, std::as_bytes(std::span(pad)), level0_at + data_blocks * kDigestSize,
             "verity hash device");
  std::vector<uint8_t> level = read_level1(hash_fd, levels, level0_at, hasher);
  if (levels.size() == 1)
    return finish(hash_one(p.salt, reinterpret_cast<std::byte*>(level.data())));
  // Each upper level hashes the blocks of the one below; the last has one block.
  for (size_t i = 1;; ++i) {
    pwrite_all(hash_fd, std::as_bytes(std::span(level)), hash_offset + levels[i].offset,
               "verity hash device");
    const auto* blocks = reinterpret_cast<const std::byte*>(level.data());
    if (i + 1 == levels.size()) return finish(hash_one(p.salt, blocks));
    std::vector<uint8_t> upper(padded(levels[i].blocks));
    hasher.hash(blocks, levels[i].blocks, upper.data());
    level = std::move(upper);
  }
}

Params read_superblock(int hash_fd, uint64_t hash_offset) {
  std::array<std::byte, kSuperblockSize> raw{};
  if (pread_full(hash_fd, raw, hash_offset, "verity hash device") != raw.size())
    fail("not a dm-verity hash device: too short for a superblock; was the tree written?");
  const auto* b = reinterpret_cast<const uint8_t*>(raw.data());
  if (std::memcmp(b + sb::signature, sb::kSignature, sizeof sb::kSignature) != 0)
    fail(
        "not a dm-verity hash device: no 'verity' signature at offset 0; is it the right "
        "partition or file?");
  if (auto v = get_le<uint32_t>(b + sb::version); v != 1)
    fail("unsupported dm-verity superblock version " + std::to_string(v) + "; only 1 is known");
  if (auto t = get_le<uint32_t>(b + sb::hash_type); t != 1)
    fail("unsupported dm-verity hash type " + std::to_string(t) +
         "; only format 1 (salt prepended) is supported");
  std::string algorithm(reinterpret_cast<const char*>(b + sb::algorithm),
                        strnlen(reinterpret_cast<const char*>(b + sb::algorithm), 32));
  if (algorithm != sb::kAlgorithm)
    fail("unsupported dm-verity hash algorithm '" + algorithm + "'; osup uses sha256");
  auto dbs = get_le<uint32_t>(b + sb::data_block_size);
  auto hbs = get_le<uint32_t>(b + sb::hash_block_size);
  if (dbs != kBlockSize || hbs != kBlockSize)
    fail("unsupported dm-verity block sizes (data " + std::to_string(dbs) + ", hash " +
         std::to_string(hbs) + "); osup uses 4096 for both");
  auto blocks = get_le<uint64_t>(b + sb::data_blocks);
  if (blocks == 0 || blocks > UINT64_MAX / kBlockSize)
    fail("corrupt dm-verity superblock: " + std::to_string(blocks) + " data blocks");
  auto salt_size = get_le<uint16_t>(b + sb::salt_size);
  if (salt_size > kMaxSalt)
    fail("corrupt dm-verity superblock: salt size " + std::to_string(salt_size) +
         " exceeds 256 bytes");
  Params p;
  p.data_size = blocks * kBlockSize;
  p.salt.assign(b + sb::salt, b + sb::salt + salt_size);
  p.uuid = Uuid::from_bytes(std::span(b + sb::uuid, 16));
  return p;
}

void verify_tree(int hash_fd, const Params& p, const Digest& root_hash, uint64_t hash_offset) {
  const uint64_t data_blocks = checked_blocks(p.data_size);
  Params found = read_superblock(hash_fd, hash_offset);
  if (found != p)
    fail("dm-verity superblock (" + describe_params(found) + ") does not match the expected (" +
         describe_params(p) + "); is it the hash device of this image?");
  uint64_t total = fd_size(hash_fd, "verity hash device");
  uint64_t have = total > hash_offset ? total - hash_offset : 0;
  if (have < hash_device_size(p.data_size))
    fail("dm-verity hash device is truncated: " + std::to_string(have) + " bytes, the tree needs " +
         std::to_string(hash_device_size(p.data_size)));

  const std::vector<Level> levels = tree_levels(data_blocks);
  if (levels.empty()) return;  // the root hash is the data block's hash: nothing on disk

  // Top-down: each level's digests of the level below are trusted once that level's own
  // blocks have matched their parent. Only levels >= 1 are kept (they are 1/16384 of the
  // data); level 0 is streamed.
  ParallelHasher hasher(p.salt);
  std::vector<uint8_t> parent(root_hash.begin(), root_hash.end());
  std::vector<std::byte> buf;
  std::vector<uint8_t> digests;
  for (size_t i = levels.size(); i-- > 0;) {
    const Level& l = levels[i];
    std::vector<uint8_t> whole;  // this level's content, to be the next parent
    if (i > 0) whole.resize(l.blocks * kBlockSize);
    constexpr uint64_t kStep = 1024;  // hash blocks read at a time (4 MiB)
    for (uint64_t first = 0; first < l.blocks; first += kStep) {
      uint64_t n = std::min(kStep, l.blocks - first);
      buf.resize(n * kBlockSize);
      digests.resize(n * kDigestSize);
      if (pread_full(hash_fd, buf, hash_offset + l.offset + first * kBlockSize,
                     "verity hash device") != buf.size())
        fail("dm-verity hash device is truncated in level " + std::to_string(i));
      hasher.hash(buf.data(), n, digests.data());
      for (uint64_t k = 0; k < n; ++k)
        if (std::memcmp(digests.data() + k * kDigestSize, parent.data() + (first + k) * kDigestSize,
                        kDigestSize) != 0)
          fail("dm-verity hash tree level " + std::to_string(i) + " block " +
               std::to_string(first + k) + " does not match " +
               (i + 1 == levels.size() ? std::string("the root hash")
                                       : "its hash in level " + std::to_string(i + 1)) +
               "; the hash device is corrupt or belongs to another image");
      if (i > 0) std::memcpy(whole.data() + first * kBlockSize, buf.data(), buf.size());
    }
    parent = std::move(whole);
  }
}

DataVerifier::DataVerifier(int hash_fd, Params p, std::optional<Digest> root_hash,
                           uint64_t hash_offset)
    : hash_fd_(hash_fd),
      p_(std::move(p)),
      root_hash_(root_hash),
      data_blocks_(checked_blocks(p_.data_size)),
      hash_offset_(hash_offset) {
  check_salt(p_);
  std::vector<Level> levels = tree_levels(data_blocks_);
  if (levels.empty()) {
    if (!root_hash_)
      fail(
          "a single-block dm-verity image has no level-0 hashes on disk; pass the root hash "
          "to check its data");
  } else {
    level0_offset_ = levels[0].offset;
  }
  partial_.reserve(kBlockSize);
  hasher_ = std::make_unique<ParallelHasher>(p_.salt);
}

DataVerifier::~DataVerifier() = default;

void DataVerifier::load_expected(uint64_t first_block) {
  // A window of 32768 digests (1 MiB) covers 128 MiB of data.
  constexpr uint64_t kWindow = 32768;
  expected_first_ = first_block;
  if (!level0_offset_) {  // single block: the root hash is its hash
    expected_.assign(root_hash_->begin(), root_hash_->end());
    expected_count_ = 1;
    return;
  }
  expected_count_ = std::min(kWindow, data_blocks_ - first_block);
  expected_.resize(expected_count_ * kDigestSize);
  if (pread_full(hash_fd_, std::as_writable_bytes(std::span(expected_)),
                 hash_offset_ + level0_offset_ + first_block * kDigestSize,
                 "verity hash device") != expected_.size())
    fail("dm-verity hash device is truncated in level 0; was it checked with verify_tree?");
}

void DataVerifier::check_blocks(const std::byte* blocks, uint64_t count) {
  if (count > data_blocks_ - next_block_)
    fail("more data than the " + std::to_string(p_.data_size) +
         " bytes the dm-verity tree covers; is it the right image?");
  while (count > 0) {
    if (next_block_ < expected_first_ || next_block_ >= expected_first_ + expected_count_)
      load_expected(next_block_);
    uint64_t n = std::min(count, expected_first_ + expected_count_ - next_block_);
    actual_.resize(n * kDigestSize);
    hasher_->hash(blocks, n, actual_.data());
    const uint8_t* want = expected_.data() + (next_block_ - expected_first_) * kDigestSize;
    if (std::memcmp(actual_.data(), want, actual_.size()) != 0) {
      uint64_t k = 0;
      while (std::memcmp(actual_.data() + k * kDigestSize, want + k * kDigestSize, kDigestSize) ==
             0)
        ++k;
      next_block_ += k;  // bytes_checked() then counts exactly the good blocks
      fail("data block " + std::to_string(next_block_) +
           " does not match its verity hash; the image is corrupt or not the one that was signed");
    }
    next_block_ += n;
    blocks += n * kBlockSize;
    count -= n;
  }
}

void DataVerifier::update(std::span<const std::byte> data) {
  if (!partial_.empty()) {
    size_t take = std::min(data.size(), kBlockSize - partial_.size());
    partial_.insert(partial_.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(take));
    data = data.subspan(take);
    if (partial_.size() < kBlockSize) return;
    check_blocks(partial_.data(), 1);
    partial_.clear();
  }
  uint64_t whole = data.size() / kBlockSize;
  if (whole) check_blocks(data.data(), whole);
  auto rest = data.subspan(whole * kBlockSize);
  if (!rest.empty()) {
    if (next_block_ >= data_blocks_)
      fail("more data than the " + std::to_string(p_.data_size) +
           " bytes the dm-verity tree covers; is it the right image?");
    partial_.assign(rest.begin(), rest.end());
  }
}

void DataVerifier::finish() {
  if (next_block_ != data_blocks_ || !partial_.empty())
    fail("data ended after " + std::to_string(next_block_ * kBlockSize + partial_.size()) +
         " bytes but the dm-verity tree covers " + std::to_string(p_.data_size) +
         "; was the image truncated?");
}

void verify(int data_fd, int hash_fd, const Params& p, const Digest& root_hash, Progress* progress,
            uint64_t data_offset, uint64_t hash_offset) {
  verify_tree(hash_fd, p, root_hash, hash_offset);
  DataVerifier verifier(hash_fd, p, root_hash, hash_offset);
  (void)posix_fadvise(data_fd, static_cast<off_t>(data_offset), static_cast<off_t>(p.data_size),
                      POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> buf(std::min<uint64_t>(kReadChunk, p.data_size));
  for (uint64_t offset = 0; offset < p.data_size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), p.data_size - offset));
    size_t got =
        pread_full(data_fd, std::span(buf.data(), want), data_offset + offset, "verity data");
    verifier.update(std::span(buf.data(), got));
    if (progress) progress->advance(got);
    if (got < want) break;  // finish() reports the short data
    offset += got;
  }
  verifier.finish();
}

}  // namespace osup::verity
