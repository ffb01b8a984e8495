// A real etcd for the fleet tests: Debian's etcd-server (/usr/bin/etcd, 3.4), one member
// or a cluster of several, each on 127.0.0.1 with ports picked free at start, data in a
// temporary directory (on /dev/shm when there is one: etcd fsyncs every write, and the
// tests measure coordination, not the disk). Members can be killed (SIGKILL) and
// restarted on the same ports and data, for the fault cases.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace osup::test {

// TLS: the members serve https with a certificate for 127.0.0.1 from a test CA and accept
// only clients with a certificate from it (--client-cert-auth).
struct EtcdTls {
  std::string ca, client_cert, client_key;  // what a client needs
};

class EtcdCluster {
 public:
  // Starts `members` members and waits (up to 20 s) until the cluster answers as a whole.
  explicit EtcdCluster(int members = 1, bool tls = false);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  [[nodiscard]] int size() const { return static_cast<int>(members_.size()); }
  // "http://127.0.0.1:PORT" of member i's client endpoint; all of them in order.
  [[nodiscard]] std::string endpoint(int i) const;
  [[nodiscard]] std::vector<std::string> endpoints() const;
  // SIGKILL member i (no goodbye to its peers: a crash).
  void kill(int i);
  // Starts member i again on its ports and data; waits until it answers.
  void restart(int i);
  [[nodiscard]] bool running(int i) const { return members_[static_cast<size_t>(i)].pid > 0; }
  // The CA and a client certificate (tls only).
  [[nodiscard]] EtcdTls tls() const;

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0, peer_port = 0, health_port = 0;  // health: plain http
    pid_t pid = -1;
  };
  void spawn(size_t i);
  void wait_healthy(size_t i, double seconds);
  TempDir dir_;
  bool tls_ = false;
  std::vector<Member> members_;
};

}  // namespace osup::test
