// A real S3 server for the restic tests: Ceph's RADOS Gateway (Debian's radosgw 16.2) on a
// one-node cluster started here: one monitor, one OSD on memstore (RAM, nothing on disk),
// the gateway on 127.0.0.1, all of them children of the test, with their config, data,
// sockets and logs in a temporary directory (on /dev/shm when there is one). No mgr: the
// gateway and the OSD do not need one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace osup::test {

class CephRgw {
 public:
  // Starts the cluster and the gateway, and makes an S3 user with access_key()/secret_key();
  // throws with the failing daemon's log when something does not come up (60 s in all).
  CephRgw();
  ~CephRgw();
  CephRgw(const CephRgw&) = delete;
  CephRgw& operator=(const CephRgw&) = delete;

  // "http://127.0.0.1:PORT": the S3 endpoint.
  [[nodiscard]] std::string endpoint() const;
  [[nodiscard]] std::string access_key() const { return "OSUPTESTACCESSKEY"; }
  [[nodiscard]] std::string secret_key() const { return "osup-test-secret-key"; }
  // Seconds from the constructor's start until the gateway answered with the user made.
  [[nodiscard]] double startup_seconds() const { return startup_seconds_; }
  // `radosgw-admin bucket list --bucket=B`: the bucket's objects as JSON.
  [[nodiscard]] std::string bucket_list(const std::string& bucket) const;
  // Stops the gateway (SIGTERM); the cluster keeps running.
  void stop_gateway();

 private:
  [[nodiscard]] RunResult ceph_cli(const std::string& tool, std::vector<std::string> args) const;
  void wait_osd_up(double seconds);
  void wait_gateway(double seconds);
  [[noreturn]] void failed(const std::string& what, const std::string& log) const;
  static void stop(pid_t& pid);
  TempDir dir_;
  std::string conf_;
  uint16_t mon_port_ = 0, rgw_port_ = 0;
  pid_t mon_ = -1, osd_ = -1, rgw_ = -1;
  double startup_seconds_ = 0;
};

}  // namespace osup::test
