#include "updater/http.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "base/size.h"
#include "updater/http_transfer.h"

namespace osup {

bool is_url(std::string_view s) {
  auto starts = [&](std::string_view scheme) {
    return s.size() > scheme.size() &&
           std::equal(scheme.begin(), scheme.end(), s.begin(), [](char a, char b) {
             return a == std::tolower(static_cast<unsigned char>(b));
           });
  };
  return starts("http://") || starts("https://");
}

namespace {

// The body in memory, at most max bytes.
class StringSink final : public http_detail::BodySink {
 public:
  StringSink(const std::string& url, size_t max) : url_(url), max_(max) {}
  void begin(const http_detail::Response& r) override {
    body_.clear();
    if (r.total && *r.total > max_) too_big();
  }
  void data(std::span<const std::byte> bytes) override {
    if (bytes.size() > max_ - body_.size()) too_big();
    body_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  std::string take() { return std::move(body_); }

 private:
  [[noreturn]] void too_big() const {
    fail("fetching " + url_ + ": larger than " + format_size(max_) + "; is it the right file?");
  }
  const std::string& url_;
  size_t max_;
  std::string body_;
};

// Hands each piece of body to a function until it says stop.
class StreamSink final : public http_detail::BodySink {
 public:
  explicit StreamSink(const std::function<bool(std::string_view)>& f) : f_(f) {}
  void begin(const http_detail::Response&) override {}
  void data(std::span<const std::byte> bytes) override {
    if (!f_(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())))
      stop_ = true;
  }
  [[nodiscard]] bool cancelled() const override { return stop_; }
  [[nodiscard]] bool stopped() const { return stop_; }

 private:
  const std::function<bool(std::string_view)>& f_;
  bool stop_ = false;
};

}  // namespace

HttpPostResult http_post_once(const std::string& url, const std::string& body,
                              const std::vector<std::string>& headers, size_t max_bytes,
                              const HttpOptions& o) {
  StringSink sink(url, max_bytes);
  const http_detail::PostResult r = http_detail::post_once(url, o, body, headers, sink);
  HttpPostResult out;
  out.ok = r.attempt.ok;
  out.status = r.status;
  out.error = r.attempt.error;
  out.body = r.attempt.ok ? sink.take() : r.error_body;
  return out;
}

void http_post_stream(const std::string& url, const std::string& body,
                      const std::vector<std::string>& headers, const HttpOptions& o,
                      const std::function<bool(std::string_view)>& on_data) {
  StreamSink sink(on_data);
  try {
    const http_detail::PostResult r = http_detail::post_once(url, o, body, headers, sink);
    if (!r.attempt.ok) fail(r.attempt.error);
  } catch (const Error&) {
    if (!sink.stopped()) throw;  // "cancelled" because on_data said stop: a normal end
  }
}

std::string http_get(const std::string& url, size_t max_bytes, const HttpOptions& o) {
  StringSink sink(url, max_bytes);
  http_detail::with_retries(o, [&] { return http_detail::get_once(url, o, 0, "", sink); });
  return sink.take();
}

}  // namespace osup
