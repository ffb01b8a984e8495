// osup data backup / restore with a restic repository on sftp, served by the real sshd
// (openssh-server) that the test starts on 127.0.0.1 with its own host key, authorized key
// and config. ssh takes root's ~/.ssh from the password database, not $HOME, so the
// client's settings (port, key, known host) reach the `ssh` restic runs through a wrapper
// first on PATH that adds `-F CONFIG`: what a user writes into /root/.ssh/config. Skipped,
// saying so, where sshd or restic is missing.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/fd.h"
#include "base/process.h"
#include "tests/support/nginx_server.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

constexpr const char* kSshd = "/usr/sbin/sshd";

void write(const std::string& path, const std::string& text, fs::perms mode = fs::perms(0644)) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
  fs::permissions(path, mode);
}

// sshd on 127.0.0.1:PORT letting root in with the client key; HOST is the client's alias.
struct SftpServer {
  test::TempDir dir;
  uint16_t port = 0;
  pid_t pid = -1;
  std::string host = "osup-test-sftp", bin = dir / "bin";

  SftpServer() {
    for (const char* k : {"host_key", "client_key"})
      run_checked({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", dir / k});
    fs::copy_file(dir / "client_key.pub", dir / "authorized_keys");
    fs::create_directories("/run/sshd");  // sshd's privilege separation directory
    port = test::closed_port();
    write(dir / "sshd_config",
          "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " +
              (dir / "host_key") + "\nAuthorizedKeysFile " + (dir / "authorized_keys") +
              "\nPidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
              "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
              "Subsystem sftp internal-sftp\n");
    write(dir / "known_hosts", host + " " + read_text_file(dir / "host_key.pub"));
    write(dir / "ssh_config", "Host " + host + "\n  HostName 127.0.0.1\n  Port " +
                                  std::to_string(port) + "\n  User root\n  IdentityFile " +
                                  (dir / "client_key") + "\n  IdentitiesOnly yes\n  HostKeyAlias " +
                                  host + "\n  UserKnownHostsFile " + (dir / "known_hosts") +
                                  "\n  StrictHostKeyChecking yes\n  BatchMode yes\n");
    write(bin + "/ssh",
          "#!/bin/sh\nexec " + *find_tool("ssh") + " -F " + (dir / "ssh_config") + " \"$@\"\n",
          fs::perms(0755));
    pid = test::spawn_logged({kSshd, "-D", "-e", "-f", dir / "sshd_config"}, dir / "sshd.log",
                             "openssh-server");
    for (int i = 0; i < 500; ++i) {  // up to 5 s
      if (test::connect_loopback(port).valid()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("sshd did not start: " << read_text_file(dir / "sshd.log"));
  }
  ~SftpServer() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  }
  SftpServer(const SftpServer&) = delete;
  SftpServer& operator=(const SftpServer&) = delete;
};

}  // namespace

TEST_CASE("osup data: backup to and restore from a restic repository on sftp (real sshd)",
          "[integration]") {
  if (!find_tool("restic") || !fs::exists(kSshd) || !find_tool("ssh")) {
    WARN(
        "restic, openssh-server or openssh-client is not installed: skipped "
        "(apt-get install restic openssh-server openssh-client)");
    return;
  }
  SftpServer server;
  test::TempDir dir;
  const std::string home = dir / "home", remote = server.dir / "repo";
  write(home + "/u/a.txt", "over sftp\n");
  test::write_random_file(home + "/u/b.bin", uint64_t{200} * 1024, 11);
  const std::string b = read_text_file(home + "/u/b.bin");
  write(dir / "pw", "sftp horse\n", fs::perms(0600));
  write(dir / "machine.json", R"({ "format": 1, "data": { "repository": "sftp:)" + server.host +
                                  ":" + remote + R"(", "password_file": ")" + (dir / "pw") +
                                  R"(", "paths": [")" + home + R"("] } })");
  RunOptions o;
  o.env["PATH"] = server.bin + ":" + std::string(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
  const auto osup = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {test::osup_exe(), "--progress", "none", "data"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--file", dir / "machine.json", "--json"});
    return test::run_cmd(argv, o);
  };

  const RunResult backup = osup({"backup"});
  INFO(backup.err);
  REQUIRE(backup.exit_code == 0);
  const json j = json::parse(backup.out);
  CHECK(j["created_repository"] == true);
  CHECK(j["files"] == 2);
  CHECK(fs::exists(remote + "/config"));  // the repository is where sftp put it

  fs::remove_all(home);
  const RunResult restore = osup({"restore", "--staging", dir / "staging"});
  INFO(restore.err);
  REQUIRE(restore.exit_code == 0);
  CHECK(json::parse(restore.out)["restored"] == 2);
  CHECK(read_text_file(home + "/u/a.txt") == "over sftp\n");
  CHECK(read_text_file(home + "/u/b.bin") == b);

  // The server gone: one line naming the repository.
  ::kill(server.pid, SIGTERM);
  ::waitpid(server.pid, nullptr, 0);
  server.pid = -1;
  const RunResult gone = osup({"backup"});
  CHECK(gone.exit_code == 1);
  CHECK_THAT(last_line(gone.err), Contains("restic repository sftp:" + server.host));
}
