// Real HTTP(S) servers for the network tests: Debian's nginx serving a directory on
// 127.0.0.1 (optionally TLS with a test CA made by the openssl CLI), with an access log
// the tests read back; and a TCP proxy that cuts connections after chosen byte counts.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "tests/support/loopback_acceptor.h"
#include "tests/support/test_support.h"

namespace osup::test {

// A CA (DIR/ca.pem, DIR/ca.key) made with the openssl CLI; returns the certificate's path.
std::string make_test_ca(const std::string& dir, const std::string& name = "osup-test-ca");

struct NginxOptions {
  bool tls = false;    // https with a server certificate for 127.0.0.1 and localhost
  bool ranges = true;  // false: `max_ranges 0;` (Range headers ignored, always 200)
  // Extra `location` blocks, verbatim: {"= /broken", "return 500;"}.
  std::vector<std::pair<std::string, std::string>> locations;
};

// One line of the access log.
struct AccessEntry {
  std::string uri;          // $request_uri
  int status = 0;           // $status
  std::string range;        // $http_range: "bytes=N-", or "" when there was none
  uint64_t body_bytes = 0;  // $body_bytes_sent (what nginx wrote, not what arrived)
};

class NginxServer {
 public:
  // Serves ROOT; throws with nginx's error log when it does not come up.
  explicit NginxServer(const std::string& root, NginxOptions opts = {});
  ~NginxServer();
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  // "http://127.0.0.1:PORT" + path (https with tls; host may be "localhost").
  [[nodiscard]] std::string url(const std::string& path,
                                const std::string& host = "127.0.0.1") const;
  // The CA that signed the server's certificate (tls only).
  [[nodiscard]] std::string ca_file() const { return dir_ / "ca/ca.pem"; }
  // Every request logged so far, in order; uri "" = all of them.
  [[nodiscard]] std::vector<AccessEntry> access_log(const std::string& uri = "") const;
  // Waits (up to 5 s) until at least n requests for uri are logged: nginx logs a request
  // whose connection was cut when it notices, a moment after the client moved on.
  std::vector<AccessEntry> wait_for_log(const std::string& uri, size_t n) const;

 private:
  void start();
  TempDir dir_;
  std::string root_;
  NginxOptions opts_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A TCP proxy on 127.0.0.1 in front of 127.0.0.1:upstream. Its i-th connection is closed
// once cuts[i] bytes of response body (the bytes after the first blank line from the
// server) went through to the client; later connections pass everything. stall: instead
// of closing, such a connection stays open and silent until the client gives up.
class CutProxy {
 public:
  CutProxy(uint16_t upstream, std::vector<uint64_t> cuts, bool stall = false);
  ~CutProxy();
  CutProxy(const CutProxy&) = delete;
  CutProxy& operator=(const CutProxy&) = delete;

  [[nodiscard]] uint16_t port() const { return acceptor_.port(); }
  [[nodiscard]] std::string url(const std::string& path) const;
  // Body bytes that reached the client, per connection so far.
  [[nodiscard]] std::vector<uint64_t> body_bytes() const;

 private:
  void accept(UniqueFd client);
  void forward(UniqueFd client, size_t index);
  uint16_t upstream_;
  std::vector<uint64_t> cuts_;
  bool stall_;
  std::atomic<bool> stop_ = false;
  mutable std::mutex m_;
  std::vector<uint64_t> body_;
  std::vector<std::thread> threads_;
  LoopbackAcceptor acceptor_;  // last: its thread starts once the rest is built
};

// A TCP port on 127.0.0.1 where nothing listens (bound once, then closed).
[[nodiscard]] uint16_t closed_port();

// A TCP connection to 127.0.0.1:port, or an invalid fd when nothing accepts it.
[[nodiscard]] UniqueFd connect_loopback(uint16_t port);

// GET path from 127.0.0.1:port over HTTP/1.0 on a plain socket (this library does not link
// libcurl), waiting up to 2 s for the answer: the whole response, "" when nothing answers.
[[nodiscard]] std::string http_get_loopback(uint16_t port, const std::string& path);

// Where daemons started by tests keep their scratch files: /dev/shm (RAM) when there is one.
[[nodiscard]] std::string scratch_parent();

// The last line of a log file, "" when it is missing or empty (for error messages).
[[nodiscard]] std::string log_tail(const std::string& path);

// Starts args[0] with stdout and stderr appended to log; throws naming `package` (the
// Debian package to install) when it cannot start. Returns the child's pid.
[[nodiscard]] pid_t spawn_logged(std::vector<std::string> args, const std::string& log,
                                 const std::string& package);

}  // namespace osup::test
