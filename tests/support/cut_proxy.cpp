// CutProxy (nginx_server.h): one thread accepting (LoopbackAcceptor), one per connection
// forwarding.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "base/error.h"
#include "base/fd.h"
#include "tests/support/nginx_server.h"

namespace osup::test {

namespace {

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Finds the end of the response headers in the server's byte stream, across reads.
struct HeaderEnd {
  bool done = false;
  uint32_t last4 = 0;
  // How many bytes of [p, p+n) are still headers.
  size_t scan(const char* p, size_t n) {
    for (size_t i = 0; i < n && !done; ++i) {
      last4 = (last4 << 8) | static_cast<unsigned char>(p[i]);
      if (last4 == 0x0d0a0d0a) {
        done = true;
        return i + 1;
      }
    }
    return done ? 0 : n;
  }
};

}  // namespace

CutProxy::CutProxy(uint16_t upstream, std::vector<uint64_t> cuts, bool stall)
    : upstream_(upstream),
      cuts_(std::move(cuts)),
      stall_(stall),
      acceptor_("cut proxy", [this](UniqueFd c) { accept(std::move(c)); }) {}

CutProxy::~CutProxy() {
  stop_ = true;
  acceptor_.stop();  // before the joins: it adds threads
  for (std::thread& t : threads_) t.join();
}

std::string CutProxy::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

std::vector<uint64_t> CutProxy::body_bytes() const {
  std::lock_guard lk(m_);
  return body_;
}

void CutProxy::accept(UniqueFd client) {
  size_t index = 0;
  {
    std::lock_guard lk(m_);
    index = body_.size();
    body_.push_back(0);
  }
  threads_.emplace_back(
      [this, c = std::move(client), index]() mutable { forward(std::move(c), index); });
}

void CutProxy::forward(UniqueFd client, size_t index) {
  UniqueFd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(upstream_);
  if (::connect(server.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
  const bool cut = index < cuts_.size();
  const uint64_t limit = cut ? cuts_[index] : UINT64_MAX;
  uint64_t body = 0;
  HeaderEnd headers;
  std::array<char, 16384> buf{};
  while (!stop_) {
    std::array<pollfd, 2> p{{{client.get(), POLLIN, 0}, {server.get(), POLLIN, 0}}};
    if (::poll(p.data(), p.size(), 50) <= 0) continue;
    if (p[0].revents != 0) {  // client -> server: the request
      const ssize_t n = ::recv(client.get(), buf.data(), buf.size(), 0);
      if (n <= 0 || !send_all(server.get(), buf.data(), static_cast<size_t>(n))) return;
    }
    if (p[1].revents != 0) {  // server -> client: headers, then body up to the limit
      const ssize_t n = ::recv(server.get(), buf.data(), buf.size(), 0);
      if (n <= 0) return;
      const size_t head = headers.scan(buf.data(), static_cast<size_t>(n));
      const uint64_t more = std::min<uint64_t>(static_cast<uint64_t>(n) - head, limit - body);
      if (!send_all(client.get(), buf.data(), head + more)) return;
      body += more;
      {
        std::lock_guard lk(m_);
        body_[index] = body;
      }
      if (body == limit) break;
    }
  }
  // Cut: both sockets close here; or, stalling, once the client closes its end.
  while (stall_ && !stop_) {
    pollfd p{client.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0 && ::recv(client.get(), buf.data(), buf.size(), 0) <= 0) return;
  }
}

}  // namespace osup::test
