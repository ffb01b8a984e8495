#include "base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"

extern char** environ;

namespace osup {
namespace {

const std::map<std::string, std::string>& tool_packages() {
  static const std::map<std::string, std::string> m = {
      {"mkfs.erofs", "erofs-utils"},
      {"fsck.erofs", "erofs-utils"},
      {"mksquashfs", "squashfs-tools"},
      {"unsquashfs", "squashfs-tools"},
      {"mkfs.vfat", "dosfstools"},
      {"fsck.vfat", "dosfstools"},
      {"mcopy", "mtools"},
      {"mmd", "mtools"},
      {"mdir", "mtools"},
      {"mtype", "mtools"},
      {"mkfs.ext4", "e2fsprogs"},
      {"e2fsck", "e2fsprogs"},
      {"debugfs", "e2fsprogs"},
      {"resize2fs", "e2fsprogs"},
      {"sfdisk", "fdisk"},
      {"debootstrap", "debootstrap"},
      {"veritysetup", "cryptsetup-bin"},
      {"systemd-dissect", "systemd-container"},
      {"zstd", "zstd"},
      {"dracut", "dracut"},
      {"grub-editenv", "grub-common"},
      {"qemu-system-x86_64", "qemu-system-x86"},
      {"qemu-system-aarch64", "qemu-system-arm"},
      {"qemu-aarch64-static", "qemu-user-static"},
      {"chroot", "coreutils"},
      {"dpkg-deb", "dpkg"},
      {"sbsign", "sbsigntool"},
      {"sbverify", "sbsigntool"},
      {"cert-to-efi-sig-list", "efitools"},
      {"sign-efi-sig-list", "efitools"},
      {"podman", "podman"},
      {"flatpak", "flatpak"},
      {"restic", "restic"},
  };
  return m;
}

}  // namespace

std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of("\n\r ");
  if (end == std::string::npos) return "";
  size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1,
                  end - (start == std::string::npos ? 0 : start + 1) + 1);
}

std::string debian_package_for(const std::string& tool) {
  auto it = tool_packages().find(tool);
  return it == tool_packages().end() ? "" : it->second;
}

std::optional<std::string> find_tool(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  // OSUP_TOOL_PATH replaces the whole search path, so tests can simulate a missing tool
  // that lives in an sbin directory.
  std::string path;
  if (const char* o = getenv("OSUP_TOOL_PATH")) {
    path = o;
  } else {
    path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
    path += ":/usr/sbin:/sbin:/usr/local/sbin";
  }
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate))
      return candidate;
  }
  return std::nullopt;
}

std::string require_tool(const std::string& name) {
  if (auto p = find_tool(name)) return *p;
  std::string pkg = debian_package_for(name);
  if (pkg.empty()) fail(name + " not found; install it and make sure it is on PATH");
  fail(name + " not found; install the Debian package " + pkg + " (apt-get install " + pkg + ")");
}

namespace {

// Our environment with opts.env added or overriding, as posix_spawn wants it.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  env.reserve(extra.size() + 64);
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!extra.count(kv.substr(0, kv.find('=')))) env.push_back(kv);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Feeds the child's stdin and drains its stdout/stderr together, so no pipe can fill up and
// deadlock. Closes each fd when done with it; -1 means not used.
void exchange(int in_fd, int out_fd, int err_fd, const std::string* stdin_data, RunResult& result,
              const std::function<void(const std::string&)>& on_line) {
  size_t in_off = 0, line_start = 0;
  if (in_fd >= 0) ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  while (in_fd >= 0 || out_fd >= 0 || err_fd >= 0) {
    pollfd fds[3];
    int n = 0;
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      fail_errno("poll", errno);
    }
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in_fd) {
        const std::string& d = *stdin_data;
        ssize_t w = in_off < d.size() ? ::write(in_fd, d.data() + in_off, d.size() - in_off) : 0;
        if (w > 0) in_off += static_cast<size_t>(w);
        if (in_off >= d.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(in_fd);
          in_fd = -1;
        }
      } else {
        char buf[65536];
        ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
        if (r > 0) {
          (fds[i].fd == out_fd ? result.out : result.err).append(buf, static_cast<size_t>(r));
          for (size_t nl; on_line && fds[i].fd == out_fd &&
                          (nl = result.out.find('\n', line_start)) != std::string::npos;
               line_start = nl + 1)
            on_line(result.out.substr(line_start, nl - line_start));
        } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
          ::close(fds[i].fd);
          (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
        }
      }
    }
  }
}

int wait_child(pid_t pid, const std::string& name) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail_errno("wait for " + name, errno);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts) {
  if (argv.empty()) fail("run: empty command");
  // A child that exits without reading all its input must not kill us with SIGPIPE;
  // the write then fails with EPIPE, which exchange() handles.
  static const bool sigpipe_ignored = [] {
    ::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)sigpipe_ignored;
  const std::string exe = require_tool(argv[0]);

  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto make_pipe = [](int p[2]) {
    if (::pipe2(p, O_CLOEXEC) < 0) fail_errno("pipe", errno);
  };
  if (opts.stdin_data) make_pipe(in_pipe);
  if (opts.capture_stdout) make_pipe(out_pipe);
  if (opts.capture_stderr) make_pipe(err_pipe);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (opts.stdin_data)
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (opts.capture_stdout) posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  if (opts.capture_stderr) posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  if (opts.cwd) posix_spawn_file_actions_addchdir_np(&fa, opts.cwd->c_str());

  std::vector<std::string> env = child_environment(opts.env);
  std::vector<std::string> args = argv;
  pid_t pid = 0;
  int rc =
      posix_spawn(&pid, exe.c_str(), &fa, nullptr, c_strings(args).data(), c_strings(env).data());
  posix_spawn_file_actions_destroy(&fa);
  // Close the child's ends in the parent.
  if (in_pipe[0] >= 0) ::close(in_pipe[0]);
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  if (err_pipe[1] >= 0) ::close(err_pipe[1]);
  if (rc != 0) {
    for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]})
      if (fd >= 0) ::close(fd);
    fail_errno("start " + argv[0], rc);
  }

  RunResult result;
  exchange(in_pipe[1], out_pipe[0], err_pipe[0], opts.stdin_data ? &*opts.stdin_data : nullptr,
           result, opts.on_stdout_line);
  result.exit_code = wait_child(pid, argv[0]);
  return result;
}

RunResult run_checked(const std::vector<std::string>& argv, const RunOptions& opts) {
  RunResult r = run(argv, opts);
  if (r.exit_code != 0) {
    std::string detail = last_line(r.err);
    if (detail.empty()) detail = last_line(r.out);
    fail(argv[0] + " failed (exit " + std::to_string(r.exit_code) + ")" +
         (detail.empty() ? "" : ": " + detail));
  }
  return r;
}

}  // namespace osup
