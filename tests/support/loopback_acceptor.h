// A listening socket on 127.0.0.1 at a free port and the thread that accepts on it, for
// the tests' own small servers (the cutting proxy, the FleetLock server): each accepted
// connection is handed to on_client on the accepting thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "base/fd.h"

namespace osup::test {

class LoopbackAcceptor {
 public:
  // what names the server in the error when it cannot listen.
  LoopbackAcceptor(const std::string& what, std::function<void(UniqueFd)> on_client);
  ~LoopbackAcceptor() { stop(); }
  LoopbackAcceptor(const LoopbackAcceptor&) = delete;
  LoopbackAcceptor& operator=(const LoopbackAcceptor&) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  // Stops accepting and waits for the thread (on_client is not called after this).
  void stop();

 private:
  UniqueFd listen_;
  uint16_t port_ = 0;
  std::function<void(UniqueFd)> on_client_;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
};

}  // namespace osup::test
