#include "format/parallel_hash.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "format/verity.h"

namespace osup::verity {
namespace {

constexpr uint64_t kParallelMin = 256;  // below this many blocks a 2nd thread is no gain

}  // namespace

ParallelHasher::ParallelHasher(std::span<const uint8_t> salt)
    : salt_(salt.begin(), salt.end()),
      mine_(salt_, kBlockSize),
      helper_([this] { helper_loop(); }) {}

ParallelHasher::~ParallelHasher() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  helper_.join();
}

void ParallelHasher::hash(const std::byte* blocks, uint64_t count, uint8_t* out) {
  if (count < kParallelMin) {
    mine_.hash_many(blocks, count, out);
    return;
  }
  {
    std::lock_guard lk(m_);
    blocks_ = blocks;
    count_ = count;
    out_ = out;
    next_.store(0);
    state_ = State::posted;
  }
  cv_.notify_all();
  std::exception_ptr mine_error;
  try {
    take_batches(mine_);
  } catch (...) {
    mine_error = std::current_exception();
    next_.store(count);  // the helper stops at its next batch
  }
  std::unique_lock lk(m_);
  if (state_ == State::posted) state_ = State::idle;  // not picked up: all done here
  cv_.wait(lk, [&] { return state_ == State::idle; });
  if (mine_error) std::rethrow_exception(mine_error);
  if (helper_error_) std::rethrow_exception(std::exchange(helper_error_, nullptr));
}

void ParallelHasher::take_batches(BlockHash& h) {
  for (uint64_t i; (i = next_.fetch_add(kBatch)) < count_;)
    h.hash_many(blocks_ + i * kBlockSize, std::min(kBatch, count_ - i), out_ + i * kDigestSize);
}

void ParallelHasher::helper_loop() {
  std::optional<BlockHash> h;
  std::unique_lock lk(m_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || state_ == State::posted; });
    if (stop_) return;
    state_ = State::running;
    lk.unlock();
    try {
      if (!h) h.emplace(salt_, kBlockSize);
      take_batches(*h);
    } catch (...) {
      next_.store(count_);
      helper_error_ = std::current_exception();  // read by hash() only after state_ = idle
    }
    lk.lock();
    state_ = State::idle;
    cv_.notify_all();
  }
}

}  // namespace osup::verity
