// Where bytes come from: a file, stdin, and (next) an HTTP server. A bundle reader reads
// through this interface and so does not care which; the updater picks the source for
// what the user named (updater/bundle_source.h). In the spirit of update_engine's fetcher
// interfaces, kept small: sequential reads, and random access where the source has it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace osup {

class ByteSource {
 public:
  virtual ~ByteSource();

  // For messages: "stdin", the file's path, a URL.
  [[nodiscard]] virtual std::string name() const = 0;
  // Fills buf from the current position, short only at the end (0 = the end). Throws on
  // an error, naming the source.
  virtual size_t read(std::span<std::byte> buf) = 0;
  // Moves n bytes ahead; returns how far it got (less only at the end). Reads and drops
  // the bytes unless the source can seek.
  virtual uint64_t skip(uint64_t n);
  // Bytes consumed so far (reads and skips).
  [[nodiscard]] virtual uint64_t position() const = 0;

  // Whether read_at works: a regular file or block device, not a pipe.
  [[nodiscard]] virtual bool random_access() const { return false; }
  // Reads at `offset` (counted like position(): from where the source started) without
  // moving; short only at the end. Throws when !random_access().
  virtual size_t read_at(std::span<std::byte> buf, uint64_t offset);
};

// A file or block device opened read-only (random access).
[[nodiscard]] std::unique_ptr<ByteSource> open_file_source(const std::string& path);
// An fd we do not own, named `name`: stdin. Random access when it is a regular file or a
// block device (`osup switch - < bundle`), counted from its position now.
[[nodiscard]] std::unique_ptr<ByteSource> fd_source(int fd, std::string name);

}  // namespace osup
