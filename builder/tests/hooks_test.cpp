// Spec hooks run in a chroot with a private mount namespace, for the host and a foreign arch.
#include "builder/rootfs/hooks.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::lexists;
using osup::test::slurp;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: hooks run inside the rootfs with the image's environment", "[unit]") {
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::host_arch(), root);
  std::ofstream(t / "10-env.sh") << "#!/bin/sh\nset -e\n"
                                    "echo \"$OSUP_IMAGE_NAME $OSUP_IMAGE_VERSION $OSUP_IMAGE_ARCH\""
                                    " > /etc/built-by\n"
                                    "ls /proc/self/ > /etc/proc-listing\n"
                                    "echo \"[$TMPDIR][$HOME]\" > /etc/env-check\n"
                                    "echo hi > /dev/null\n";
  std::ofstream(t / "20-fail.sh") << "echo 'something broke' >&2\nexit 3\n";
  b::Spec spec;
  spec.name = "demo";
  spec.version = "1.2.3";
  spec.arch = osup::host_arch();
  spec.hooks = {t / "10-env.sh"};
  const char* tmp = std::getenv("TMPDIR");
  const std::optional<std::string> old_tmp = tmp ? std::optional<std::string>(tmp) : std::nullopt;
  ::setenv("TMPDIR", "/nonexistent-host-tmp", 1);
  b::run_hooks(spec, root);
  if (old_tmp)
    ::setenv("TMPDIR", old_tmp->c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  CHECK(slurp(root + "/etc/built-by") == "demo 1.2.3 " + osup::arch_name(osup::host_arch()) + "\n");
  CHECK_THAT(slurp(root + "/etc/proc-listing"), Catch::Contains("cmdline"));
  CHECK(slurp(root + "/etc/env-check") == "[][/root]\n");  // the host's TMPDIR stays out
  CHECK_FALSE(lexists(root + "/tmp/osup-hook-0"));
  // The namespace's mounts are gone: nothing of root is mounted on the host.
  CHECK_THAT(slurp("/proc/self/mountinfo"), !Catch::Contains(root));
  CHECK(fs::is_empty(root + "/dev"));

  spec.hooks = {t / "20-fail.sh"};
  CHECK(error_of([&] { b::run_hooks(spec, root); }) ==
        "hook " + (t / "20-fail.sh") + ": failed (exit 3): something broke; fix the hook script");
}

TEST_CASE("rootfs: hooks run for the foreign arch through qemu-user binfmt", "[unit]") {
  if (::access("/proc/sys/fs/binfmt_misc/qemu-aarch64", F_OK) != 0) {
    WARN("qemu-aarch64 binfmt not registered; skipping");
    return;
  }
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::Arch::aarch64, root);
  std::ofstream(t / "uname.sh") << "uname -m > /etc/machine\n";
  b::Spec spec;
  spec.name = "demo";
  spec.version = "1";
  spec.arch = osup::Arch::aarch64;
  spec.hooks = {t / "uname.sh"};
  fs::create_symlink("busybox", root + "/bin/uname");
  b::run_hooks(spec, root);
  CHECK(slurp(root + "/etc/machine") == "aarch64\n");
}
