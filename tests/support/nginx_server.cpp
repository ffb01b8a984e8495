#include "tests/support/nginx_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "base/fd.h"

extern char** environ;

namespace fs = std::filesystem;

namespace osup::test {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  if (!f) fail("writing " + path);
}

// A free port now: bound to port 0, read back, closed (another process may take it
// before nginx does; start() retries then).
uint16_t pick_port() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail_errno("binding a test port", errno);
  return ntohs(a.sin_port);
}

void make_server_cert(const std::string& dir) {
  run_checked({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", dir + "/server.key", "-out", dir + "/server.csr", "-subj",
               "/CN=localhost"});
  write_file(dir + "/server.ext",
             "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
             "extendedKeyUsage=serverAuth\n");
  run_checked({"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.pem",
               "-CAkey", dir + "/ca.key", "-CAcreateserial", "-days", "2", "-out",
               dir + "/server.pem", "-extfile", dir + "/server.ext"});
}

std::string config(const std::string& dir, const std::string& root, uint16_t port,
                   const NginxOptions& o) {
  std::ostringstream c;
  c << "master_process off;\nworker_processes 1;\npid " << dir << "/nginx.pid;\n"
    << "error_log " << dir << "/error.log info;\n"
    << "events { worker_connections 64; }\nhttp {\n"
    << "  log_format osup '$request_uri $status $body_bytes_sent \"$http_range\"';\n"
    << "  access_log " << dir << "/access.log osup;\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    c << "  " << t << "_temp_path " << dir << "/tmp/" << t << ";\n";
  c << "  types { application/octet-stream osup; application/json json; }\n"
    << "  default_type application/octet-stream;\n  sendfile on;\n"
    << "  server {\n    listen 127.0.0.1:" << port << (o.tls ? " ssl" : "") << ";\n"
    << "    root " << root << ";\n";
  if (o.tls)
    c << "    ssl_certificate " << dir << "/ca/server.pem;\n"
      << "    ssl_certificate_key " << dir << "/ca/server.key;\n";
  if (!o.ranges) c << "    max_ranges 0;\n";
  for (const auto& [match, body] : o.locations)
    c << "    location " << match << " { " << body << " }\n";
  c << "  }\n}\n";
  return c.str();
}

}  // namespace

std::string make_test_ca(const std::string& dir, const std::string& name) {
  fs::create_directories(dir);
  run_checked({"openssl",
               "req",
               "-x509",
               "-newkey",
               "ec",
               "-pkeyopt",
               "ec_paramgen_curve:P-256",
               "-nodes",
               "-keyout",
               dir + "/ca.key",
               "-out",
               dir + "/ca.pem",
               "-days",
               "2",
               "-subj",
               "/CN=" + name,
               "-addext",
               "basicConstraints=critical,CA:TRUE",
               "-addext",
               "keyUsage=critical,keyCertSign,cRLSign"});
  return dir + "/ca.pem";
}

uint16_t closed_port() { return pick_port(); }

NginxServer::NginxServer(const std::string& root, NginxOptions opts)
    : root_(fs::absolute(root).string()), opts_(std::move(opts)) {
  fs::create_directories(dir_ / "tmp");
  if (opts_.tls) {
    make_test_ca(dir_ / "ca");
    make_server_cert(dir_ / "ca");
  }
  start();
}

void NginxServer::start() {
  std::string why;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = pick_port();
    write_file(dir_ / "nginx.conf", config(dir_.path(), root_, port_, opts_));
    std::vector<std::string> args = {"/usr/sbin/nginx",  "-p", dir_.path(),         "-e",
                                     dir_ / "error.log", "-c", dir_ / "nginx.conf", "-g",
                                     "daemon off;"};
    pid_ = spawn_logged(std::move(args), dir_ / "stderr.log", "nginx-light");
    for (int i = 0; i < 500; ++i) {  // up to 5 s
      if (connect_loopback(port_).valid()) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    why = last_line(slurp(dir_ / "error.log") + "\n" + slurp(dir_ / "stderr.log"));
  }
  fail("nginx did not start: " + why);
}

NginxServer::~NginxServer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 300; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string NginxServer::url(const std::string& path, const std::string& host) const {
  return std::string(opts_.tls ? "https" : "http") + "://" + host + ":" + std::to_string(port_) +
         path;
}

std::vector<AccessEntry> NginxServer::access_log(const std::string& uri) const {
  std::vector<AccessEntry> out;
  std::ifstream f(dir_ / "access.log");
  for (std::string line; std::getline(f, line);) {
    std::istringstream in(line);
    AccessEntry e;
    std::string range;
    in >> e.uri >> e.status >> e.body_bytes >> std::ws;
    std::getline(in, range);
    if (range.size() >= 2) range = range.substr(1, range.size() - 2);  // the quotes
    e.range = range == "-" ? "" : range;
    if (uri.empty() || e.uri == uri) out.push_back(e);
  }
  return out;
}

std::vector<AccessEntry> NginxServer::wait_for_log(const std::string& uri, size_t n) const {
  std::vector<AccessEntry> got;
  for (int i = 0; i < 500; ++i) {
    got = access_log(uri);
    if (got.size() >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return got;
}

UniqueFd connect_loopback(uint16_t port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  return s;
}

std::string http_get_loopback(uint16_t port, const std::string& path) {
  UniqueFd s = connect_loopback(port);
  if (!s.valid()) return "";
  timeval tv{2, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::write(s.get(), req.data(), req.size()) != static_cast<ssize_t>(req.size())) return "";
  std::string got;
  char buf[1024];
  for (ssize_t n; (n = ::read(s.get(), buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<size_t>(n));
  return got;
}

std::string scratch_parent() { return fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp"; }

std::string log_tail(const std::string& path) { return last_line(slurp(path)); }

pid_t spawn_logged(std::vector<std::string> args, const std::string& log,
                   const std::string& package) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail_errno("starting " + args[0] + " (apt-get install " + package + ")", rc);
  return pid;
}

}  // namespace osup::test
