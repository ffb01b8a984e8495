#include "tests/support/etcd_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "tests/support/nginx_server.h"

extern char** environ;

namespace fs = std::filesystem;

namespace osup::test {
namespace {

constexpr const char* kEtcd = "/usr/bin/etcd";

// GET /health: true when the member answers {"health":"true"}, which needs a leader.
bool healthy(uint16_t port) {
  return http_get_loopback(port, "/health").find("\"health\":\"true\"") != std::string::npos;
}

// A certificate signed by the test CA in dir: server (for 127.0.0.1) or client. The
// server's may act as a client too: etcd's JSON gateway dials its own gRPC port with it
// (without clientAuth every gateway request is a 503).
void make_cert(const std::string& dir, const std::string& name, bool server) {
  run_checked({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".csr",
               "-subj", "/CN=" + name});
  std::ofstream(dir + "/" + name + ".ext")
      << (server ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,"
                   "clientAuth\n"
                 : "extendedKeyUsage=clientAuth\n")
      << "basicConstraints=CA:FALSE\n";
  run_checked({"openssl", "x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", dir + "/ca.pem",
               "-CAkey", dir + "/ca.key", "-CAcreateserial", "-days", "2", "-out",
               dir + "/" + name + ".pem", "-extfile", dir + "/" + name + ".ext"});
}

}  // namespace

EtcdCluster::EtcdCluster(int members, bool tls) : dir_(scratch_parent(), "osup-etcd-"), tls_(tls) {
  if (!fs::exists(kEtcd)) fail("/usr/bin/etcd not found; install the Debian package etcd-server");
  if (tls_) {
    make_test_ca(dir_ / "tls", "osup-etcd-test-ca");
    make_cert(dir_ / "tls", "server", true);
    make_cert(dir_ / "tls", "client", false);
  }
  for (int i = 0; i < members; ++i)
    members_.push_back({"m" + std::to_string(i), closed_port(), closed_port(), closed_port(), -1});
  for (size_t i = 0; i < members_.size(); ++i) spawn(i);
  for (size_t i = 0; i < members_.size(); ++i) wait_healthy(i, 20);
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_)
    if (m.pid > 0) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, nullptr, 0);
    }
}

std::string EtcdCluster::endpoint(int i) const {
  return std::string(tls_ ? "https" : "http") +
         "://127.0.0.1:" + std::to_string(members_[static_cast<size_t>(i)].client_port);
}

EtcdTls EtcdCluster::tls() const {
  return {dir_ / "tls/ca.pem", dir_ / "tls/client.pem", dir_ / "tls/client.key"};
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  out.reserve(members_.size());
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

void EtcdCluster::spawn(size_t i) {
  Member& m = members_[i];
  std::string cluster;
  for (const Member& o : members_)
    cluster +=
        (cluster.empty() ? "" : ",") + o.name + "=http://127.0.0.1:" + std::to_string(o.peer_port);
  const std::string client =
      std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(m.client_port);
  const std::string health = "http://127.0.0.1:" + std::to_string(m.health_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  // Short heartbeats and elections: a killed leader is replaced in about a second.
  std::vector<std::string> args = {kEtcd,         "--name",
                                   m.name,        "--data-dir",
                                   dir_ / m.name, "--listen-client-urls",
                                   client,        "--advertise-client-urls",
                                   client,        "--listen-peer-urls",
                                   peer,          "--initial-advertise-peer-urls",
                                   peer,          "--initial-cluster",
                                   cluster,       "--initial-cluster-state",
                                   "new",         "--initial-cluster-token",
                                   "osup-test",   "--heartbeat-interval",
                                   "50",          "--election-timeout",
                                   "500",         "--logger",
                                   "zap",         "--log-level",
                                   "warn"};
  if (tls_)  // the plain listener only answers /health for wait_healthy()
    args.insert(args.end(), {"--cert-file", dir_ / "tls/server.pem", "--key-file",
                             dir_ / "tls/server.key", "--trusted-ca-file", dir_ / "tls/ca.pem",
                             "--client-cert-auth", "--listen-metrics-urls", health});
  m.pid = spawn_logged(std::move(args), dir_ / (m.name + ".log"), "etcd-server");
}

void EtcdCluster::wait_healthy(size_t i, double seconds) {
  Member& m = members_[i];
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (healthy(tls_ ? m.health_port : m.client_port)) return;
    int status = 0;
    if (::waitpid(m.pid, &status, WNOHANG) == m.pid) {
      m.pid = -1;
      fail("etcd member " + m.name + " exited: " + log_tail(dir_ / (m.name + ".log")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  fail("etcd member " + m.name + " not healthy after " + std::to_string(seconds) +
       " s: " + log_tail(dir_ / (m.name + ".log")));
}

void EtcdCluster::kill(int i) {
  Member& m = members_[static_cast<size_t>(i)];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  ::waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

void EtcdCluster::restart(int i) {
  kill(i);
  spawn(static_cast<size_t>(i));
  wait_healthy(static_cast<size_t>(i), 20);
}

}  // namespace osup::test
