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

}  // namespace

std::string http_get(const std::string& url, size_t max_bytes, const HttpOptions& o) {
  StringSink sink(url, max_bytes);
  http_detail::with_retries(o, [&] { return http_detail::get_once(url, o, 0, "", sink); });
  return sink.take();
}

}  // namespace osup
