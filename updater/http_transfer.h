// The one place updater/http*.cpp talk to libcurl: one GET attempt with the options every
// transfer shares, its outcome classified (done, worth a retry, or an Error thrown), and
// the retry loop with exponential backoff. Internal to the HTTP layer (see http.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "updater/http.h"

namespace osup::http_detail {

// What the response to one attempt said, as far as its body's receiver cares.
struct Response {
  long status = 0;
  std::optional<uint64_t> range_start;  // a 206's Content-Range: bytes START-END/TOTAL
  std::optional<uint64_t> total;        // TOTAL of that, or a 200's Content-Length
  std::string etag;
};

// Receives the body of a 2xx response. Either function may throw osup::Error, which ends
// the transfer without a retry.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Before the first byte of a 2xx body (also for an empty one).
  virtual void begin(const Response& r) = 0;
  virtual void data(std::span<const std::byte> bytes) = 0;
  // Polled while the transfer runs (about once a second, and per chunk): true ends it
  // with Error("cancelled").
  [[nodiscard]] virtual bool cancelled() const { return false; }
};

struct Attempt {
  bool ok = false;
  std::string error;      // when !ok: the one-line reason, worth a retry
  uint64_t received = 0;  // body bytes handed to the sink
};

// One GET of url; from > 0 asks for bytes from..end (Range), if_range (an ETag) makes
// the server send the whole file instead when it has changed. 2xx bodies go to sink,
// other bodies are dropped. Errors that a retry cannot fix (4xx other than 408/429, TLS
// trust, bad URL, the sink's own) are thrown; the others come back in Attempt.
[[nodiscard]] Attempt get_once(const std::string& url, const HttpOptions& o, uint64_t from,
                               const std::string& if_range, BodySink& sink);

// One POST of `body` with extra header lines ("Content-Type: application/json"). 2xx
// bodies go to sink. A non-2xx status comes back as !ok with status and the start of the
// server's body in error_body (the caller decides what is worth a retry); transport
// failures come back as !ok with status 0. The connection is kept per thread, so a client
// that posts often (etcd) reuses it.
struct PostResult {
  Attempt attempt;
  long status = 0;
  std::string error_body;
};
[[nodiscard]] PostResult post_once(const std::string& url, const HttpOptions& o,
                                   const std::string& body, const std::vector<std::string>& headers,
                                   BodySink& sink);

// Calls attempt() until one is ok: up to o.max_attempts in a row that received nothing,
// sleeping first_backoff_s, then twice that, ... (at most 30 s) in between. sleep(s)
// returns false to give up at once (cancelled). Throws the last error with the number of
// attempts.
using Sleeper = std::function<bool(double seconds)>;
void with_retries(const HttpOptions& o, const std::function<Attempt()>& attempt,
                  const Sleeper& sleep = {});

// "HTTP 404 (not found); is the URL right?"
[[nodiscard]] std::string describe_status(long status);

}  // namespace osup::http_detail
