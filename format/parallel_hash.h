// dm-verity's per-block hashing spread over two cores: the caller's thread and one helper
// kept for the object's life. Used by the tree builder and DataVerifier (format/verity.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "format/block_hash.h"

namespace osup::verity {

// Hashes blocks on the caller's thread and one helper thread kept for the object's life
// (a thread per call would cost a thread creation per 2 MiB stream chunk). Both take
// batches from a shared counter, so the thread that gets more CPU (the other core may be
// busy reading or writing) hashes more; digests land at their block's place either way.
class ParallelHasher {
 public:
  explicit ParallelHasher(std::span<const uint8_t> salt);
  ~ParallelHasher();
  ParallelHasher(const ParallelHasher&) = delete;
  ParallelHasher& operator=(const ParallelHasher&) = delete;

  // Packed digests of `count` consecutive blocks into out.
  void hash(const std::byte* blocks, uint64_t count, uint8_t* out);

 private:
  enum class State { idle, posted, running };
  static constexpr uint64_t kBatch = 32;  // blocks (128 KiB) taken at a time

  void take_batches(BlockHash& h);

  void helper_loop();

  std::vector<uint8_t> salt_;
  BlockHash mine_;
  std::mutex m_;
  std::condition_variable cv_;
  State state_ = State::idle;
  bool stop_ = false;
  const std::byte* blocks_ = nullptr;  // the job: set under m_ before it is posted
  uint64_t count_ = 0;
  uint8_t* out_ = nullptr;
  std::atomic<uint64_t> next_{0};
  std::exception_ptr helper_error_;
  std::thread helper_;  // last: starts once everything above is ready
};

}  // namespace osup::verity
