// open_http_source (http.h): a URL as a sequential ByteSource. A producer thread runs the
// transfers (with retries and Range continuations) and fills a bounded ring buffer that
// read() drains, so the download runs ahead of the install by up to kBuffer bytes.
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/size.h"
#include "updater/http.h"
#include "updater/http_transfer.h"

namespace osup {

namespace {

constexpr size_t kBuffer = 4 * MiB;

class HttpSource final : public ByteSource, private http_detail::BodySink {
 public:
  HttpSource(std::string url, HttpOptions o)
      : url_(std::move(url)), o_(std::move(o)), ring_(kBuffer) {
    thread_ = std::thread([this] { produce(); });
  }
  ~HttpSource() override {
    {
      std::lock_guard lk(m_);
      closed_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  HttpSource(const HttpSource&) = delete;
  HttpSource& operator=(const HttpSource&) = delete;

  [[nodiscard]] std::string name() const override { return url_; }
  [[nodiscard]] uint64_t position() const override { return pos_; }

  size_t read(std::span<std::byte> buf) override {
    size_t done = 0;
    std::unique_lock lk(m_);
    while (done < buf.size()) {
      cv_.wait(lk, [&] { return size_ > 0 || finished_; });
      if (size_ == 0) {
        if (error_) std::rethrow_exception(error_);
        break;  // the end
      }
      const size_t n = std::min(size_, buf.size() - done);
      const size_t first = std::min(n, ring_.size() - head_);
      std::memcpy(buf.data() + done, ring_.data() + head_, first);
      std::memcpy(buf.data() + done + first, ring_.data(), n - first);
      head_ = (head_ + n) % ring_.size();
      size_ -= n;
      done += n;
      cv_.notify_all();
    }
    pos_ += done;
    return done;
  }

 private:
  // The producer thread: transfers until the whole body is in the ring, or an error.
  void produce() {
    try {
      http_detail::with_retries(
          o_,
          [&] {
            const bool strong = !etag_.empty() && etag_.rfind("W/", 0) != 0;
            return http_detail::get_once(url_, o_, received_, strong ? etag_ : "", *this);
          },
          [&](double seconds) {
            std::unique_lock lk(m_);
            return !cv_.wait_for(lk, std::chrono::duration<double>(seconds),
                                 [&] { return closed_.load(); });
          });
    } catch (...) {
      std::lock_guard lk(m_);
      error_ = std::current_exception();
    }
    std::lock_guard lk(m_);
    finished_ = true;
    cv_.notify_all();
  }

  void begin(const http_detail::Response& r) override {
    if (received_ > 0 && r.status != 206)
      fail("reading " + url_ + ": the connection was cut at byte " + std::to_string(received_) +
           " and the server cannot continue from there (no range requests, or the file " +
           "changed); download it to a file first");
    if (r.status == 206 && r.range_start != received_)
      fail("reading " + url_ + ": asked for bytes from " + std::to_string(received_) +
           ", the server sent others");
    if (!first_response_) {
      if (r.total != total_)
        fail("reading " + url_ + ": the file changed on the server while it was read");
      return;
    }
    first_response_ = false;
    total_ = r.total;
    etag_ = r.etag;
  }

  void data(std::span<const std::byte> bytes) override {
    while (!bytes.empty()) {
      std::unique_lock lk(m_);
      cv_.wait(lk, [&] { return size_ < ring_.size() || closed_; });
      if (closed_) fail("cancelled");
      const size_t tail = (head_ + size_) % ring_.size();
      const size_t n = std::min({bytes.size(), ring_.size() - size_, ring_.size() - tail});
      std::memcpy(ring_.data() + tail, bytes.data(), n);
      size_ += n;
      received_ += n;
      bytes = bytes.subspan(n);
      cv_.notify_all();
    }
  }

  [[nodiscard]] bool cancelled() const override { return closed_; }

  const std::string url_;
  const HttpOptions o_;
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::byte> ring_;
  size_t head_ = 0, size_ = 0;  // the unread bytes in ring_ (under m_)
  bool finished_ = false;       // the producer is done (under m_)
  std::exception_ptr error_;    // why, if it failed (under m_)
  std::atomic<bool> closed_ = false;
  uint64_t pos_ = 0;       // the reader's
  uint64_t received_ = 0;  // the producer's: body bytes into ring_ so far
  bool first_response_ = true;
  std::optional<uint64_t> total_;
  std::string etag_;
};

}  // namespace

std::unique_ptr<ByteSource> open_http_source(const std::string& url, const HttpOptions& o) {
  return std::make_unique<HttpSource>(url, o);
}

}  // namespace osup
