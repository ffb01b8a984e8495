#include "base/fd.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "base/error.h"

namespace osup {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

UniqueFd open_file(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) fail_errno("open " + path, errno);
  return UniqueFd(fd);
}

namespace {

// The retry loop all four share: `op(done)` moves bytes [done, size) and returns what the
// syscall did; EINTR retries, 0 ends a read early (EOF), errors name `verb what`.
template <class Op>
size_t transfer(size_t size, const char* verb, const std::string& what, Op op) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = op(done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(verb + (" " + what), errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

size_t read_full(int fd, std::span<std::byte> buf, const std::string& what) {
  return transfer(buf.size(), "read", what,
                  [&](size_t done) { return ::read(fd, buf.data() + done, buf.size() - done); });
}

void write_all(int fd, std::span<const std::byte> buf, const std::string& what) {
  if (transfer(buf.size(), "write", what, [&](size_t done) {
        return ::write(fd, buf.data() + done, buf.size() - done);
      }) < buf.size())
    fail("write " + what + ": the device took no more bytes");
}

size_t pread_full(int fd, std::span<std::byte> buf, uint64_t offset, const std::string& what) {
  return transfer(buf.size(), "read", what, [&](size_t done) {
    return ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
  });
}

void pwrite_all(int fd, std::span<const std::byte> buf, uint64_t offset, const std::string& what) {
  if (transfer(buf.size(), "write", what, [&](size_t done) {
        return ::pwrite(fd, buf.data() + done, buf.size() - done,
                        static_cast<off_t>(offset + done));
      }) < buf.size())
    fail("write " + what + ": the device took no more bytes");
}

void fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) < 0) fail_errno("sync " + what, errno);
}

uint64_t fd_size(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) fail_errno("stat " + what, errno);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) < 0) fail_errno("size of " + what, errno);
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

std::string read_text_file(const std::string& path) {
  UniqueFd fd = open_file(path, O_RDONLY);
  std::string out;
  std::byte buf[65536];
  for (;;) {
    size_t n = read_full(fd.get(), buf, path);
    out.append(reinterpret_cast<const char*>(buf), n);
    if (n < sizeof buf) break;
  }
  return out;
}

void fsync_dir(const std::string& dir) {
  UniqueFd fd = open_file(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
  fsync_fd(fd.get(), dir);
}

void atomic_write_file(const std::string& path, std::string_view content, int mode) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    write_all(fd.get(), std::as_bytes(std::span(content.data(), content.size())), tmp);
    fsync_fd(fd.get(), tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) fail_errno("rename " + tmp, errno);
  fsync_dir(std::filesystem::path(path).parent_path().string());
}

}  // namespace osup
