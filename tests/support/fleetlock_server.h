// A small FleetLock protocol server of the tests' own (the protocol of Zincati and
// airlock): POST /v1/pre-reboot and /v1/steady-state with the header
// `fleet-lock-protocol: true` and {"client_params":{"node_uuid","group"}}; `slots` holders
// per group. 200 on success; 409 {"kind":"failed_lock","value":...} when all slots are
// held; 400 when the header or body is wrong. HTTP/1.1 on 127.0.0.1, one connection at a
// time, closed after each answer.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "tests/support/loopback_acceptor.h"

namespace osup::test {

class FleetLockServer {
 public:
  explicit FleetLockServer(int slots);
  FleetLockServer(const FleetLockServer&) = delete;
  FleetLockServer& operator=(const FleetLockServer&) = delete;

  [[nodiscard]] std::string url() const;
  [[nodiscard]] std::set<std::string> holders(const std::string& group) const;
  [[nodiscard]] int bad_requests() const { return bad_.load(); }

 private:
  void serve(UniqueFd client);
  std::string answer(const std::string& request);
  int slots_;
  std::atomic<int> bad_ = 0;
  mutable std::mutex m_;
  std::map<std::string, std::set<std::string>> held_;
  LoopbackAcceptor acceptor_;  // last: its thread starts once the rest is built
};

}  // namespace osup::test
