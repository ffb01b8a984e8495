#include "tests/support/loopback_acceptor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "base/error.h"

namespace osup::test {

LoopbackAcceptor::LoopbackAcceptor(const std::string& what, std::function<void(UniqueFd)> on_client)
    : listen_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), on_client_(std::move(on_client)) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!listen_.valid() || ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_.get(), 64) != 0 ||
      ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail_errno(what + ": listening on 127.0.0.1", errno);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] {
    while (!stop_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (client.valid()) on_client_(std::move(client));
    }
  });
}

void LoopbackAcceptor::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace osup::test
