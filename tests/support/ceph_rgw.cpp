#include "tests/support/ceph_rgw.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "tests/support/nginx_server.h"

namespace fs = std::filesystem;

namespace osup::test {
namespace {

// True when the gateway answers GET / (anonymous: an empty bucket list) with 200.
bool answers(uint16_t port) {
  const std::string got = http_get_loopback(port, "/");
  return got.starts_with("HTTP/1.0 200") || got.starts_with("HTTP/1.1 200");
}

bool exited(pid_t& pid) {
  if (pid <= 0 || ::waitpid(pid, nullptr, WNOHANG) != pid) return pid <= 0;
  pid = -1;
  return true;
}

}  // namespace

CephRgw::CephRgw() : dir_(scratch_parent(), "osup-ceph-"), conf_(dir_ / "ceph.conf") {
  for (const char* tool : {"ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"})
    if (!find_tool(tool))
      fail(std::string(tool) + " not found; apt-get install ceph-mon ceph-osd radosgw");
  const auto start = std::chrono::steady_clock::now();
  mon_port_ = closed_port();
  rgw_port_ = closed_port();
  for (const char* d : {"run", "mon", "osd/ceph-0", "rgw"}) fs::create_directories(dir_ / d);
  const std::string d = dir_.path();
  const std::string fsid = last_line(run_checked({"uuidgen"}).out);
  // Why the settings below:
  // - auth none: nothing to guard on 127.0.0.1, and no keyrings to make. But radosgw 16.2
  //   with auth none then finds no connection mode to offer the monitor (its log: "preferred
  //   modes []") and retries "get_initial_auth_request returned -13" forever, while the
  //   ceph CLI and radosgw-admin connect fine; the crc client modes fix that.
  // - msgr2 only, on the port picked free (msgr1 would want a second port).
  // - paxos: each map change (the OSD's boot, each of the gateway's 4 pools) waits for
  //   paxos_propose_interval (1 s) to batch proposals; at 0.05 s the startup took 6 s
  //   instead of 16 s (a shell script doing the same, the CPU shared with other tests).
  // - memstore: the OSD keeps objects in RAM (capped by memstore_device_bytes), no disk.
  // - size 1 and chooseleaf type 0: one OSD on one host holds every PG.
  // - 8 PGs a pool: the gateway makes 4 pools (.rgw.root, default.rgw.{log,control,meta})
  //   and 2 more with the first bucket (index, data): 48 PGs, well under
  //   mon_max_pg_per_osd (250), so that limit needs no raise. No mgr, so no autoscaler.
  std::ofstream(conf_) << "[global]\nfsid = " << fsid << "\nmon host = v2:127.0.0.1:" << mon_port_
                       << "\nmon initial members = a\n"
                          "ms bind msgr1 = false\nms bind ipv6 = false\n"
                          "auth cluster required = none\nauth service required = none\n"
                          "auth client required = none\n"
                          "ms mon client mode = crc\nms client mode = crc\n"
                          "run dir = "
                       << d << "/run\nlog file = " << d << "/$name.log\nmon data = " << d
                       << "/mon/$cluster-$id\nosd data = " << d
                       << "/osd/$cluster-$id\n"
                          "paxos propose interval = 0.05\npaxos min wait = 0.01\n"
                          "osd objectstore = memstore\nmemstore device bytes = 268435456\n"
                          "osd pool default size = 1\nosd pool default min size = 1\n"
                          "osd pool default pg num = 8\nosd pool default pgp num = 8\n"
                          "osd pool default pg autoscale mode = off\n"
                          "osd crush chooseleaf type = 0\nmon allow pool delete = true\n"
                          "[client.rgw.a]\nrgw frontends = beast endpoint=127.0.0.1:"
                       << rgw_port_ << "\nrgw data = " << d << "/rgw\n";
  try {
    if (const RunResult r = ceph_cli("ceph-mon", {"--mkfs", "-i", "a"}); r.exit_code != 0)
      failed("ceph-mon --mkfs failed (exit " + std::to_string(r.exit_code) + ")", "mon.a.log");
    mon_ = spawn_logged({*find_tool("ceph-mon"), "-c", conf_, "-i", "a", "-f"}, dir_ / "mon.out",
                        "ceph-mon");
    // `ceph osd new` waits for the monitor's quorum (its own, at once), then gives the id.
    const std::string uuid = last_line(run_checked({"uuidgen"}).out);
    const RunResult id = ceph_cli("ceph", {"osd", "new", uuid});
    if (id.exit_code != 0 || last_line(id.out) != "0")
      failed("ceph osd new failed: " + last_line(id.err), "mon.a.log");
    if (const RunResult r = ceph_cli("ceph-osd", {"-i", "0", "--mkfs", "--osd-uuid", uuid});
        r.exit_code != 0)
      failed("ceph-osd --mkfs failed: " + last_line(r.err), "osd.0.log");
    osd_ = spawn_logged({*find_tool("ceph-osd"), "-c", conf_, "-i", "0", "-f"}, dir_ / "osd.out",
                        "ceph-osd");
    wait_osd_up(30);
    // The gateway makes its pools at its first start, before it listens.
    rgw_ = spawn_logged({*find_tool("radosgw"), "-c", conf_, "-n", "client.rgw.a", "-f"},
                        dir_ / "rgw.out", "radosgw");
    wait_gateway(30);
    if (const RunResult r = ceph_cli(
            "radosgw-admin", {"user", "create", "--uid=osup-test", "--display-name=osup test",
                              "--access-key=" + access_key(), "--secret=" + secret_key()});
        r.exit_code != 0)
      failed("radosgw-admin user create failed: " + last_line(r.err), "client.admin.log");
  } catch (...) {
    stop(rgw_);
    stop(osd_);
    stop(mon_);
    throw;
  }
  startup_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

CephRgw::~CephRgw() {
  stop(rgw_);
  stop(osd_);
  stop(mon_);
}

std::string CephRgw::endpoint() const { return "http://127.0.0.1:" + std::to_string(rgw_port_); }

std::string CephRgw::bucket_list(const std::string& bucket) const {
  const RunResult r = ceph_cli("radosgw-admin", {"bucket", "list", "--bucket=" + bucket});
  if (r.exit_code != 0)
    fail("radosgw-admin bucket list --bucket=" + bucket + " failed: " + last_line(r.err));
  return r.out;
}

void CephRgw::stop_gateway() { stop(rgw_); }

// The Ceph tools on this cluster; a monitor that does not answer ends them after 30 s.
RunResult CephRgw::ceph_cli(const std::string& tool, std::vector<std::string> args) const {
  args.insert(args.begin(), {"timeout", "30", tool, "-c", conf_});
  return run(args);
}

void CephRgw::wait_osd_up(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (ceph_cli("ceph", {"osd", "stat", "-f", "json"}).out.find("\"num_up_osds\":1") !=
        std::string::npos)
      return;
    if (exited(osd_)) failed("ceph-osd exited", "osd.0.log");
    if (exited(mon_)) failed("ceph-mon exited", "mon.a.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  failed("the OSD is not up after " + std::to_string(static_cast<int>(seconds)) + " s",
         "osd.0.log");
}

void CephRgw::wait_gateway(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (answers(rgw_port_)) return;
    if (exited(rgw_)) failed("radosgw exited", "client.rgw.a.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  failed("radosgw does not answer on " + endpoint() + " after " +
             std::to_string(static_cast<int>(seconds)) + " s",
         "client.rgw.a.log");
}

// One line: what failed, the daemon's log (kept only while the object lives) and its last
// line, plus the last line the daemon wrote to stderr (an early exit says why there).
void CephRgw::failed(const std::string& what, const std::string& log) const {
  std::string out;
  for (const char* f : {"mon.out", "osd.out", "rgw.out"})
    if (const std::string l = log_tail(dir_ / f); !l.empty())
      out += std::string(" ") + f + ": " + l + ";";
  fail("one-node Ceph cluster: " + what + "; " + log + ": " + log_tail(dir_ / log) + ";" + out);
}

void CephRgw::stop(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 1000; ++i) {  // up to 10 s
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

}  // namespace osup::test
