#include "updater/http_transfer.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <thread>

#include "base/error.h"

namespace osup::http_detail {

namespace {

void global_init() {
  static const bool done = [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail("initialising libcurl failed");
    return true;
  }();
  (void)done;
}

std::string lower_first(std::string s) {
  if (!s.empty() && std::isupper(static_cast<unsigned char>(s[0])) &&
      (s.size() < 2 || !std::isupper(static_cast<unsigned char>(s[1]))))
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

bool iequals_prefix(std::string_view line, std::string_view prefix) {
  return line.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), line.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data()) return std::nullopt;
  return v;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The state of one attempt, shared with libcurl's callbacks (which must not throw).
struct Call {
  BodySink& sink;
  CURL* curl;
  Response resp;
  std::optional<uint64_t> content_length;
  bool started = false, is_2xx = false;
  uint64_t received = 0;
  std::exception_ptr error;
  std::string error_body;  // the start of a non-2xx body (etcd explains itself there)
};

void on_header_line(Call& c, std::string_view line) {
  if (iequals_prefix(line, "HTTP/")) {  // a new response (after a redirect or 100)
    c.resp = {};
    c.content_length.reset();
  } else if (iequals_prefix(line, "content-length:")) {
    c.content_length = parse_u64(trim(line.substr(15)));
  } else if (iequals_prefix(line, "etag:")) {
    c.resp.etag = std::string(trim(line.substr(5)));
  } else if (iequals_prefix(line, "content-range:")) {
    std::string_view v = trim(line.substr(14));  // bytes START-END/TOTAL
    if (!iequals_prefix(v, "bytes ")) return;
    v.remove_prefix(6);
    c.resp.range_start = parse_u64(v.substr(0, v.find('-')));
    if (size_t slash = v.find('/'); slash != std::string_view::npos)
      c.resp.total = parse_u64(v.substr(slash + 1));
  }
}

size_t header_cb(char* p, size_t size, size_t n, void* user) {
  on_header_line(*static_cast<Call*>(user), std::string_view(p, size * n));
  return size * n;
}

// At the first body byte (or the end of an empty body): the status is final now.
void start(Call& c) {
  c.started = true;
  curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &c.resp.status);
  c.is_2xx = c.resp.status >= 200 && c.resp.status < 300;
  if (!c.is_2xx) return;
  if (c.resp.status != 206) {
    c.resp.range_start.reset();
    c.resp.total = c.content_length;
  }
  c.sink.begin(c.resp);
}

size_t body_cb(char* p, size_t size, size_t n, void* user) {
  Call& c = *static_cast<Call*>(user);
  try {
    if (!c.started) start(c);
    if (!c.is_2xx) {  // an error page: only its start is kept
      c.error_body.append(p, std::min(size * n, 512 - std::min<size_t>(512, c.error_body.size())));
      return size * n;
    }
    if (c.sink.cancelled()) fail("cancelled");
    c.sink.data(std::as_bytes(std::span(p, size * n)));
    c.received += size * n;
    return size * n;
  } catch (...) {
    c.error = std::current_exception();
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
}

int progress_cb(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  Call& c = *static_cast<Call*>(user);
  if (!c.sink.cancelled()) return 0;
  c.error = std::make_exception_ptr(Error("cancelled"));
  return 1;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

void set_options(CURL* c, const std::string& url, const HttpOptions& o) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, "osup");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o.low_speed_time_s);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  if (o.timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, o.timeout_s);
  if (!o.client_cert.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, o.client_cert.c_str());
  if (!o.client_key.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, o.client_key.c_str());
  if (!o.ca_file.empty()) {  // only this CA bundle, not the system's directory as well
    curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
  }
}

const char* reason(long status) {
  switch (status) {
    case 400:
      return "bad request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 408:
      return "request timeout";
    case 410:
      return "gone";
    case 416:
      return "range not satisfiable";
    case 429:
      return "too many requests";
    case 500:
      return "internal server error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return nullptr;
  }
}

bool retryable_status(long status) { return status == 408 || status == 429 || status >= 500; }

// A failed perform: an Attempt to retry, or an Error for what a retry cannot fix.
Attempt classify(CURLcode rc, CURL* c, const std::string& url, const HttpOptions& o,
                 const char* errbuf) {
  std::string detail = lower_first(*errbuf ? errbuf : curl_easy_strerror(rc));
  long os_errno = 0;
  curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
      if (os_errno != 0) detail = lower_first(std::strerror(static_cast<int>(os_errno)));
      return {false, "connecting to " + url + ": " + detail};
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return {false, "fetching " + url + ": " + detail};
    case CURLE_PEER_FAILED_VERIFICATION:
      fail("fetching " + url + ": TLS certificate not trusted (" + detail + "); " +
           (o.ca_file.empty() ? "pass --ca FILE with the channel's CA"
                              : "is " + o.ca_file + " the channel's CA?"));
    case CURLE_SSL_CACERT_BADFILE:
      fail("fetching " + url + ": cannot use the CA file '" + o.ca_file + "' (" + detail + ")");
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_OUT_OF_MEMORY:
      fail("fetching " + url + ": " + detail);
    default:
      return {false, "fetching " + url + ": " + detail};
  }
}

}  // namespace

std::string describe_status(long status) {
  std::string out = "HTTP " + std::to_string(status);
  if (const char* r = reason(status)) out += std::string(" (") + r + ")";
  if (status == 404 || status == 410) out += "; is the URL right?";
  if (status == 401 || status == 403) out += "; does the server let this machine in?";
  return out;
}

namespace {

// The callbacks and error buffer every attempt shares; returns libcurl's result.
CURLcode perform(Call& call, const std::string& url, const HttpOptions& o, curl_slist* headers) {
  CURL* c = call.curl;
  set_options(c, url, o);
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &call);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &call);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &call);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  if (call.error) std::rethrow_exception(call.error);
  if (rc == CURLE_OK && !call.started) start(call);  // a body of 0 bytes
  if (rc != CURLE_OK && !(call.started && !call.is_2xx)) {
    call.error_body = errbuf;  // handed to classify() below through the Call
  }
  return rc;
}

// One handle per thread for POSTs: libcurl keeps its connections, so a client that
// talks to the same server often does not pay a TCP handshake each time.
CURL* thread_post_handle() {
  thread_local std::unique_ptr<CURL, CurlDeleter> h(curl_easy_init());
  if (!h) fail("cannot create a libcurl handle");
  curl_easy_reset(h.get());
  return h.get();
}

}  // namespace

Attempt get_once(const std::string& url, const HttpOptions& o, uint64_t from,
                 const std::string& if_range, BodySink& sink) {
  global_init();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) fail("fetching " + url + ": cannot create a libcurl handle");
  CURL* c = curl.get();
  Call call{sink, c};
  const std::string range = std::to_string(from) + "-";
  if (from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  std::unique_ptr<curl_slist, CurlDeleter> headers;
  if (from > 0 && !if_range.empty())
    headers.reset(curl_slist_append(nullptr, ("If-Range: " + if_range).c_str()));
  const CURLcode rc = perform(call, url, o, headers.get());
  if (call.started && !call.is_2xx) {
    std::string what = "fetching " + url + ": " + describe_status(call.resp.status);
    if (!retryable_status(call.resp.status)) fail(what);
    return {false, what, 0};
  }
  if (rc != CURLE_OK) {
    Attempt a = classify(rc, c, url, o, call.error_body.c_str());
    a.received = call.received;
    return a;
  }
  return {true, "", call.received};
}

PostResult post_once(const std::string& url, const HttpOptions& o, const std::string& body,
                     const std::vector<std::string>& headers, BodySink& sink) {
  global_init();
  CURL* c = thread_post_handle();
  Call call{sink, c};
  curl_slist* raw = nullptr;
  for (const std::string& h : headers) {
    curl_slist* next = curl_slist_append(raw, h.c_str());
    if (!next) curl_slist_free_all(raw), fail("posting to " + url + ": out of memory");
    raw = next;
  }
  std::unique_ptr<curl_slist, CurlDeleter> list(raw);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  const CURLcode rc = perform(call, url, o, list.get());
  PostResult r;
  if (call.started && !call.is_2xx) {
    r.status = call.resp.status;
    r.error_body = call.error_body;
    r.attempt = {false, "posting to " + url + ": " + describe_status(call.resp.status), 0};
    return r;
  }
  if (rc != CURLE_OK) {
    r.attempt = classify(rc, c, url, o, call.error_body.c_str());
    r.attempt.received = call.received;
    return r;
  }
  r.status = call.resp.status;
  r.attempt = {true, "", call.received};
  return r;
}

void with_retries(const HttpOptions& o, const std::function<Attempt()>& attempt,
                  const Sleeper& sleep) {
  double backoff = o.first_backoff_s;
  int failures = 0;
  for (;;) {
    Attempt a = attempt();
    if (a.ok) return;
    if (a.received > 0) failures = 0, backoff = o.first_backoff_s;  // it moved forward
    if (++failures >= std::max(1, o.max_attempts))
      fail(a.error + " (gave up after " + std::to_string(failures) +
           (failures == 1 ? " attempt)" : " attempts)"));
    if (sleep) {
      if (!sleep(backoff)) fail("cancelled");
    } else {
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    }
    backoff = std::min(backoff * 2, 30.0);
  }
}

}  // namespace osup::http_detail
