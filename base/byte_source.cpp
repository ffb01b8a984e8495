#include "base/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "base/error.h"
#include "base/fd.h"

namespace osup {

ByteSource::~ByteSource() = default;

uint64_t ByteSource::skip(uint64_t n) {
  std::vector<std::byte> scratch(static_cast<size_t>(std::min<uint64_t>(n, 1 << 16)));
  uint64_t done = 0;
  while (done < n) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(scratch.size(), n - done));
    const size_t got = read(std::span(scratch.data(), want));
    done += got;
    if (got < want) break;
  }
  return done;
}

size_t ByteSource::read_at(std::span<std::byte>, uint64_t) {
  fail("reading " + name() + " at an offset: it is a stream, not a file");
}

namespace {

// read(2)/pread(2) on an fd; `base` is where the source started in the fd.
class FdSource final : public ByteSource {
 public:
  FdSource(int fd, std::string name, UniqueFd owned = {})
      : owned_(std::move(owned)), fd_(fd), name_(std::move(name)) {
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
      const off_t at = ::lseek(fd_, 0, SEEK_CUR);
      if (at >= 0) base_ = static_cast<uint64_t>(at), seekable_ = true;
    }
  }

  std::string name() const override { return name_; }

  size_t read(std::span<std::byte> buf) override {
    const size_t n = read_full(fd_, buf, name_);
    pos_ += n;
    return n;
  }

  uint64_t skip(uint64_t n) override {
    if (!seekable_) return ByteSource::skip(n);
    // Never past the end: a skip that lands beyond it must come back short, as a read would.
    struct stat st {};
    uint64_t end = UINT64_MAX;
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) end = static_cast<uint64_t>(st.st_size);
    const uint64_t here = base_ + pos_;
    const uint64_t step = here >= end ? 0 : std::min(n, end - here);
    if (::lseek(fd_, static_cast<off_t>(here + step), SEEK_SET) < 0)
      fail_errno("seek in " + name_, errno);
    pos_ += step;
    return step;
  }

  uint64_t position() const override { return pos_; }
  bool random_access() const override { return seekable_; }

  size_t read_at(std::span<std::byte> buf, uint64_t offset) override {
    if (!seekable_) return ByteSource::read_at(buf, offset);
    return pread_full(fd_, buf, base_ + offset, name_);
  }

 private:
  UniqueFd owned_;
  int fd_;
  std::string name_;
  uint64_t base_ = 0, pos_ = 0;
  bool seekable_ = false;
};

}  // namespace

std::unique_ptr<ByteSource> open_file_source(const std::string& path) {
  UniqueFd fd = open_file(path, O_RDONLY);
  const int raw = fd.get();
  return std::make_unique<FdSource>(raw, path, std::move(fd));
}

std::unique_ptr<ByteSource> fd_source(int fd, std::string name) {
  return std::make_unique<FdSource>(fd, std::move(name));
}

}  // namespace osup
