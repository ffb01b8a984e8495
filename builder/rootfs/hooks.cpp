#include "builder/rootfs/hooks.h"

#include <sys/stat.h>

#include <filesystem>

#include "base/error.h"
#include "base/process.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

// Mounts live in a private namespace and vanish with it. /dev is a tmpfs with bind mounts
// of a few nodes, so a hook's `rm -rf /dev/*` can never reach the host's devices.
constexpr const char* kSetup = R"(set -e
r="$1"; hook="$2"
mount -t proc proc "$r/proc"
mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for n in null zero full random urandom tty; do
  : > "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"
done
ln -s /proc/self/fd "$r/dev/fd"; mkdir "$r/dev/pts" "$r/dev/shm"
# A clean environment: nothing of the build host's (TMPDIR, LANG, ...) leaks into the image.
exec env -i PATH="$PATH" HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive TERM="${TERM:-dumb}" \
  OSUP_IMAGE_NAME="$OSUP_IMAGE_NAME" OSUP_IMAGE_VERSION="$OSUP_IMAGE_VERSION" \
  OSUP_IMAGE_ARCH="$OSUP_IMAGE_ARCH" chroot "$r" /bin/sh -c "$hook"
)";

// The mount points must be real directories inside DEST: a symlink could point a mount at
// the host.
void require_mount_points(const std::string& dest) {
  for (const char* d : {"proc", "sys", "dev", "tmp"}) {
    const std::string p = dest + "/" + d;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      fs::create_directory(p);
    } else if (!S_ISDIR(st.st_mode)) {
      fail("/" + std::string(d) + " in the rootfs is not a directory");
    }
  }
}

void run_hook(const Spec& spec, const std::string& hook, size_t index, const std::string& dest) {
  require_mount_points(dest);
  const std::string inside = "/tmp/osup-hook-" + std::to_string(index);
  fs::copy_file(hook, dest + inside, fs::copy_options::overwrite_existing);
  fs::permissions(dest + inside, fs::perms(0755));
  RunOptions opts;
  opts.env = {{"OSUP_IMAGE_NAME", spec.name},
              {"OSUP_IMAGE_VERSION", spec.version},
              {"OSUP_IMAGE_ARCH", arch_name(spec.arch)},
              {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  RunResult r = run({"unshare", "--mount", "--propagation", "private", "sh", "-c", kSetup,
                     "osup-hook", fs::absolute(dest).string(), inside},
                    opts);
  fs::remove(dest + inside);
  if (r.exit_code != 0) {
    const std::string tail = last_line(r.err.empty() ? r.out : r.err);
    fail("failed (exit " + std::to_string(r.exit_code) + ")" + (tail.empty() ? "" : ": " + tail) +
         "; fix the hook script");
  }
}

}  // namespace

void run_hooks(const Spec& spec, const std::string& dest) {
  for (size_t i = 0; i < spec.hooks.size(); ++i) {
    const std::string hook = spec.hooks[i].string();
    with_context("hook " + hook, [&] { run_hook(spec, hook, i, dest); });
  }
}

}  // namespace osup::build
