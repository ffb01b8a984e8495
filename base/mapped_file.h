// A read-only memory map of a file or of a region of a disk. The pages are the file's,
// not anonymous memory: a whole OS image can be mapped on a device with little RAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace osup {

class MappedFile {
 public:
  // Maps `size` bytes of fd from `offset` (0 = to the end of the file). offset need not be
  // page-aligned. An empty region maps nothing.
  MappedFile(int fd, const std::string& what, uint64_t offset = 0, uint64_t size = 0);
  // Opens path read-only and maps all of it.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  [[nodiscard]] std::span<const std::byte> bytes() const { return {data_, size_}; }
  [[nodiscard]] size_t size() const { return size_; }

 private:
  void map(int fd, const std::string& what, uint64_t offset, uint64_t size);
  void* base_ = nullptr;
  size_t mapped_ = 0;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// A new file of a given size, mapped writable: what is written lands in the page cache of
// the file, not in anonymous memory. finish() cuts the file to the bytes used.
class MappedOutputFile {
 public:
  MappedOutputFile(const std::string& path, uint64_t size);
  ~MappedOutputFile();
  MappedOutputFile(const MappedOutputFile&) = delete;
  MappedOutputFile& operator=(const MappedOutputFile&) = delete;
  [[nodiscard]] std::span<std::byte> bytes() { return {data_, size_}; }
  void finish(uint64_t used);

 private:
  std::string path_;
  int fd_ = -1;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace osup
