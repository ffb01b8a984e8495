#include "builder/image/filesystem.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "format/uuid.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

constexpr uint64_t kBlock = 4096;

std::vector<std::string> erofs_args(const std::string& root, const std::string& out,
                                    const FsImageOptions& o, RunOptions& run_opts) {
  std::vector<std::string> argv = {"mkfs.erofs", "--quiet"};
  if (o.compression == "lz4hc" || o.compression == "lz4")
    argv.push_back("-z" + o.compression);
  else if (o.compression != "none")
    fail("erofs compression '" + o.compression + "' is not supported; use lz4hc, lz4 or none");
  // Not -T: it would also flatten every file's mtime (python's .pyc checks rely on them).
  // erofs-utils takes the build time from SOURCE_DATE_EPOCH and clamps newer mtimes to it.
  if (o.source_date_epoch) run_opts.env["SOURCE_DATE_EPOCH"] = std::to_string(*o.source_date_epoch);
  std::string seed = o.uuid_seed;
  if (seed.empty() && o.source_date_epoch) seed = "epoch-" + std::to_string(*o.source_date_epoch);
  if (!seed.empty()) argv.push_back("-U" + Uuid::derived(seed, "rootfs").str());
  argv.insert(argv.end(), {out, root});
  return argv;
}

std::vector<std::string> squashfs_args(const std::string& root, const std::string& out,
                                       const FsImageOptions& o, RunOptions& run_opts) {
  std::vector<std::string> argv = {"mksquashfs", root,           out,       "-noappend",
                                   "-quiet",     "-no-progress", "-xattrs", "-reproducible"};
  if (o.compression == "none") {
    argv.insert(argv.end(), {"-noI", "-noD", "-noF", "-noX"});
  } else if (o.compression == "zstd" || o.compression == "xz" || o.compression == "gzip" ||
             o.compression == "lz4") {
    argv.insert(argv.end(), {"-comp", o.compression});
  } else {
    fail("squashfs compression '" + o.compression +
         "' is not supported; use zstd, xz, gzip, lz4 or none");
  }
  // Like erofs: the environment variable fixes the build time and keeps per-file mtimes
  // (-mkfs-time would clash with a SOURCE_DATE_EPOCH already in the environment).
  if (o.source_date_epoch) run_opts.env["SOURCE_DATE_EPOCH"] = std::to_string(*o.source_date_epoch);
  return argv;
}

}  // namespace

uint64_t make_fs_image(const std::string& root, const std::string& out, const FsImageOptions& o) {
  return with_context("making the " + o.type + " image of " + root, [&] {
    if (!fs::is_directory(root)) fail(root + " is not a directory");
    std::error_code ec;
    fs::remove(out, ec);  // mkfs.erofs refuses nothing, but a stale longer file would linger
    RunOptions run_opts;
    std::vector<std::string> argv;
    if (o.type == "erofs")
      argv = erofs_args(root, out, o, run_opts);
    else if (o.type == "squashfs")
      argv = squashfs_args(root, out, o, run_opts);
    else
      fail("unknown filesystem type '" + o.type + "'; use erofs or squashfs");
    run_checked(argv, run_opts);

    UniqueFd fd = open_file(out, O_RDWR | O_CLOEXEC);
    uint64_t size = fd_size(fd.get(), out);
    const uint64_t padded = align_up(size, kBlock);
    if (padded != size && ::ftruncate(fd.get(), static_cast<off_t>(padded)) != 0)
      fail_errno("pad " + out + " to 4096 bytes", errno);
    // No fsync: the image is an intermediate; the pipeline syncs the bundle and disk it feeds.
    return padded;
  });
}

}  // namespace osup::build
