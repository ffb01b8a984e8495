// Shared helpers for tests: scratch directories, tiny real root filesystems made from
// Debian's busybox-static, and running the built CLIs.
#pragma once

#include <string>
#include <vector>

#include "format/arch.h"
#include "format/process.h"

namespace osup::test {

// A fresh directory under $TMPDIR, removed (recursively) when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Populates DIR with a tiny but real root filesystem for ARCH: busybox-static (from
// the .deb that scripts/install-deps.sh caches), /bin/sh, /etc/os-release, machine state
// to be stripped (machine-id, ssh host keys, apt lists, logs).
void make_busybox_rootfs(Arch arch, const std::string& dir);

// Paths of the built tools.
[[nodiscard]] std::string osup_build_exe();
[[nodiscard]] std::string osup_exe();
[[nodiscard]] std::string source_dir();

// Writes `size` bytes of deterministic pseudo-random data (seeded) to path.
void write_random_file(const std::string& path, uint64_t size, uint32_t seed);

// Runs a command; captures output.
RunResult run_cmd(const std::vector<std::string>& argv, const RunOptions& opts = {});

}  // namespace osup::test
