// Thin RAII and full-length I/O over POSIX file descriptors. Every short read/write
// and EINTR is handled here so callers never see partial transfers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace osup {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// open(2) that throws "open PATH: reason".
[[nodiscard]] UniqueFd open_file(const std::string& path, int flags, int mode = 0644);

// Reads until the buffer is full or EOF; returns bytes read (short only at EOF).
[[nodiscard]] size_t read_full(int fd, std::span<std::byte> buf, const std::string& what);
void write_all(int fd, std::span<const std::byte> buf, const std::string& what);
// Positional variants; pread_full returns short only at EOF.
[[nodiscard]] size_t pread_full(int fd, std::span<std::byte> buf, uint64_t offset,
                                const std::string& what);
void pwrite_all(int fd, std::span<const std::byte> buf, uint64_t offset, const std::string& what);
void fsync_fd(int fd, const std::string& what);

// Size of a regular file or block device.
[[nodiscard]] uint64_t fd_size(int fd, const std::string& what);

[[nodiscard]] std::string read_text_file(const std::string& path);
// Crash-safe replacement: write PATH.tmp, fsync, rename over PATH, fsync the directory.
void atomic_write_file(const std::string& path, std::string_view content, int mode = 0644);
// fsync a directory so renames and creations inside it are durable.
void fsync_dir(const std::string& dir);

}  // namespace osup
