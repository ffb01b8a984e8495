#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"
#include "base/fd.h"

namespace osup {

MappedFile::MappedFile(int fd, const std::string& what, uint64_t offset, uint64_t size) {
  map(fd, what, offset, size);
}

MappedFile::MappedFile(const std::string& path) {
  UniqueFd fd = open_file(path, O_RDONLY | O_CLOEXEC);
  map(fd.get(), path, 0, 0);  // the mapping outlives the descriptor
}

void MappedFile::map(int fd, const std::string& what, uint64_t offset, uint64_t size) {
  if (size == 0) {
    const uint64_t total = fd_size(fd, what);
    if (offset > total) fail(what + " is smaller than offset " + std::to_string(offset));
    size = total - offset;
  }
  if (size == 0) return;
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  mapped_ = static_cast<size_t>(size + (offset - start));
  base_ = ::mmap(nullptr, mapped_, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    fail_errno("map " + what, errno);
  }
  data_ = static_cast<const std::byte*>(base_) + (offset - start);
  size_ = static_cast<size_t>(size);
}

MappedFile::~MappedFile() {
  if (base_) ::munmap(base_, mapped_);
}

MappedOutputFile::MappedOutputFile(const std::string& path, uint64_t size)
    : path_(path), size_(static_cast<size_t>(size)) {
  UniqueFd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) fail_errno("size " + path, errno);
  if (size) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) fail_errno("map " + path, errno);
    data_ = static_cast<std::byte*>(p);
  }
  fd_ = fd.release();
}

MappedOutputFile::~MappedOutputFile() {
  if (data_) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedOutputFile::finish(uint64_t used) {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  if (::ftruncate(fd_, static_cast<off_t>(used)) != 0) fail_errno("size " + path_, errno);
  size_ = 0;
}

}  // namespace osup
