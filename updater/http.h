// HTTP(S) for network updates, through libcurl: small documents (a channel index and its
// signature), resumable downloads into a file, and a URL read as a ByteSource
// (`osup switch https://.../x.osup`). Every transfer retries cut connections, timeouts,
// 5xx, 408 and 429 with exponential backoff and continues with a Range request where it
// stopped; other 4xx and untrusted certificates fail at once. Errors are one line naming
// the URL ("fetching URL: HTTP 404 (not found); is the URL right?"). Proxies come from
// the environment (http_proxy, https_proxy, no_proxy), as libcurl reads them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/byte_source.h"
#include "base/progress.h"

namespace osup {

struct HttpOptions {
  std::string ca_file;           // "" = the system's CAs; else only this CA bundle (--ca FILE)
  int max_attempts = 6;          // per transfer; an attempt that moved forward resets the count
  double first_backoff_s = 0.5;  // doubles after each failed attempt, capped at 30 s
  long connect_timeout_s = 20;
  long low_speed_time_s = 60;           // a transfer under 1 byte/s this long is cut, then retried
  long timeout_s = 0;                   // a whole transfer at most this long (0: no limit)
  std::string client_cert, client_key;  // TLS client certificate (PEM), for etcd
};

// http:// or https:// (case-insensitive scheme).
[[nodiscard]] bool is_url(std::string_view s);

// The whole body of a small document; more than max_bytes is an error (no retry).
[[nodiscard]] std::string http_get(const std::string& url, size_t max_bytes, const HttpOptions& o);

// One POST of a small document (at most max_bytes back), no retry: the caller (etcd's
// failover, FleetLock's wait) decides. `headers` are whole lines ("Content-Type: ...").
struct HttpPostResult {
  bool ok = false;    // a 2xx status
  long status = 0;    // 0 when no response came (refused, timed out, reset)
  std::string body;   // the 2xx body, or the start of the error body
  std::string error;  // when !ok: one line naming the URL
};
[[nodiscard]] HttpPostResult http_post_once(const std::string& url, const std::string& body,
                                            const std::vector<std::string>& headers,
                                            size_t max_bytes, const HttpOptions& o);

// A POST whose answer is a stream (etcd's watch): each piece of body goes to on_data
// until it returns false, the server ends it, or the transfer fails (Error).
void http_post_stream(const std::string& url, const std::string& body,
                      const std::vector<std::string>& headers, const HttpOptions& o,
                      const std::function<bool(std::string_view)>& on_data);

// What a signed index says about a file.
struct DownloadExpect {
  uint64_t size = 0;
  std::string sha256;  // hex
};

// Downloads url into path, continuing after the bytes already in path (a cut earlier in
// this run or a previous run's partial file) with Range requests. A server that ignores
// ranges makes it start over from 0. More bytes than e.size is an error; at the end size
// and SHA-256 are checked, and on a mismatch the file is deleted. The file is fsynced
// every 8 MiB, so a power cut loses little. progress (may be null) counts resumed bytes
// as done.
void download_to_file(const std::string& url, const std::string& path, const DownloadExpect& e,
                      const HttpOptions& o, Progress* progress);

// A URL read as a sequential stream (no random access); a background thread reads up to
// 4 MiB ahead. A cut connection is continued with a Range request from the first byte not
// yet received; a server without range support then fails the read with one line.
[[nodiscard]] std::unique_ptr<ByteSource> open_http_source(const std::string& url,
                                                           const HttpOptions& o);

}  // namespace osup
