// populate_rootfs from a tarball or a directory, on tiny real busybox root filesystems.
#include "builder/rootfs/source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "base/process.h"
#include "builder/rootfs/elf_check.h"
#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::slurp;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: tarball source for both arches keeps links, modes and content", "[unit]") {
  for (osup::Arch arch : {osup::Arch::x86_64, osup::Arch::aarch64}) {
    TempDir t;
    osup::build::Spec spec;
    spec.arch = arch;
    osup::test::make_busybox_rootfs(arch, t / "src");
    fs::permissions(t / "src/etc/machine-id", fs::perms(0600));
    for (const std::string comp : {"--zstd", "--gzip", "--xz"}) {
      const std::string tarball = t / ("rootfs.tar" + comp);
      osup::run_checked({"tar", "--create", comp, "--file", tarball, "-C", t / "src", "."});
      const std::string dest = t / ("dest" + comp);
      spec.rootfs = b::TarballSource{tarball};
      b::populate_rootfs(spec, dest);
      CHECK(fs::read_symlink(dest + "/bin/sh") == "busybox");
      CHECK(fs::file_size(dest + "/bin/busybox") == fs::file_size(t / "src/bin/busybox"));
      CHECK((fs::status(dest + "/bin/busybox").permissions() & fs::perms::all) == fs::perms(0755));
      CHECK((fs::status(dest + "/etc/machine-id").permissions() & fs::perms::all) ==
            fs::perms(0600));
      CHECK(slurp(dest + "/etc/os-release") == slurp(t / "src/etc/os-release"));
      CHECK_NOTHROW(b::check_rootfs_arch(dest, arch));
    }
  }
}

TEST_CASE("rootfs: directory source copies everything; dest must be empty", "[unit]") {
  for (osup::Arch arch : {osup::Arch::x86_64, osup::Arch::aarch64}) {
    TempDir t;
    osup::test::make_busybox_rootfs(arch, t / "src");
    REQUIRE(::chown((t / "src/etc/hostname").c_str(), 1234, 5678) == 0);
    b::Spec spec;
    spec.rootfs = b::DirectorySource{t / "src"};
    b::populate_rootfs(spec, t / "dest");
    CHECK(fs::read_symlink(t / "dest/bin/ls") == "busybox");
    struct stat st {};
    REQUIRE(::stat((t / "dest/etc/hostname").c_str(), &st) == 0);
    CHECK(st.st_uid == 1234);
    CHECK(st.st_gid == 5678);
    CHECK_NOTHROW(b::check_rootfs_arch(t / "dest", arch));
    CHECK_THROWS_WITH(b::populate_rootfs(spec, t / "dest"), Catch::Contains("is not empty"));
  }
}
