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

}  // namespace osup
