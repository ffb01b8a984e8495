// Shared helpers for tests: scratch directories, tiny real root filesystems made from
// Debian's busybox-static, and running the built CLIs.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/arch.h"
#include "base/process.h"
#include "base/temp_dir.h"

namespace osup::test {

// Scratch directories for tests: base/temp_dir.h's.
using TempDir = osup::TempDir;

// Populates DIR with a tiny but real root filesystem for ARCH: busybox-static (from
// the .deb that scripts/install-deps.sh caches), /bin/sh, /etc/os-release, machine state
// to be stripped (machine-id, ssh host keys, apt lists, logs). with_kernel adds stand-in
// /boot/vmlinuz-0.0.1-test and initrd.img (random bytes: enough for the ESP and entries)
// and Debian's real systemd-boot EFI binary for the arch.
void make_busybox_rootfs(Arch arch, const std::string& dir, bool with_kernel = false);

// Unpacks the .deb of Debian package NAME for ARCH (from the cache scripts/install-deps.sh
// fills) into DIR: e.g. systemd-boot-efi for its real EFI stubs of both arches.
void extract_cached_deb(const std::string& name, Arch arch, const std::string& dir);

// Paths of the built tools.
[[nodiscard]] std::string osup_build_exe();
[[nodiscard]] std::string osup_exe();
[[nodiscard]] std::string source_dir();

// An uncompressed newc cpio archive of (name, content) files, as cpio -H newc (and dracut
// --no-compress) writes it, padded to a multiple of `pad` bytes.
[[nodiscard]] std::string newc_cpio(const std::vector<std::pair<std::string, std::string>>& files,
                                    size_t pad = 4);

// Writes `size` bytes of deterministic pseudo-random data (seeded) to path.
void write_random_file(const std::string& path, uint64_t size, uint32_t seed);

// Marks the clusters of PATH free in every FAT copy of the FAT32 file system at byte
// OFFSET of IMAGE and leaves its directory record: what a power cut leaves when a
// removal's FAT sectors reached the disk and its directory sector did not
// (docs/powerloss.md, finding 5). Returns the file's first cluster.
uint32_t free_fat_clusters(const std::string& image, uint64_t offset, const std::string& path);

// Runs a command; captures output.
RunResult run_cmd(const std::vector<std::string>& argv, const RunOptions& opts = {});

}  // namespace osup::test

namespace osup::test {

struct TestImage {
  std::string disk, bundle, manifest;
};

// A signing key pair made with `osup-build keygen`: DIR/osup.key, and DIR/pub/osup.pub.pem
// alone in a directory so it can be passed as a trust store (--keys DIR/pub).
struct TestKey {
  std::string private_key, public_key, trust_dir;
};
TestKey make_key(const std::string& dir, const std::string& type = "ed25519");

// Builds a tiny busybox image with the real osup-build CLI: spec, rootfs and outputs live
// under DIR (outputs in DIR/OUT). Throws with osup-build's stderr on failure. extra_args go
// to `osup-build image` (e.g. --bundle-compression none). With secure_boot (a directory
// of `keygen --secure-boot`), the spec signs with its db key: signed UKIs, Type #2 entries.
TestImage build_tiny_image(const std::string& dir, Arch arch, const std::string& version,
                           const TestKey& key, const std::string& name = "tiny",
                           const std::vector<std::string>& extra_args = {},
                           const std::string& out = "out", const std::string& secure_boot = "");

// The command line of the real osup working offline on DISK, trusting KEY, without
// progress output: osup --disk DISK --keys DIR --progress none [--booted S] GLOBALS...
// (the command and its arguments go after).
[[nodiscard]] std::vector<std::string> offline_osup(const std::string& disk, const TestKey& key,
                                                    const std::string& booted = "",
                                                    const std::vector<std::string>& globals = {});
// Runs it with ARGS (the command and its arguments).
RunResult run_offline_osup(const std::string& disk, const TestKey& key, const std::string& booted,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& globals = {});

// SHA-256 (hex) of the bytes of the partition labelled LABEL in a disk image.
[[nodiscard]] std::string partition_sha256(const std::string& disk, const std::string& label);

}  // namespace osup::test
