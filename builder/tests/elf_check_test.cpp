// The rootfs arch check (ELF headers read through symlinks inside the root) and find_kernel.
#include "builder/rootfs/elf_check.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: arch check reads ELF headers through symlinks inside the root", "[unit]") {
  TempDir t;
  osup::test::make_busybox_rootfs(osup::Arch::aarch64, t / "arm");
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, t / "x86");
  CHECK_NOTHROW(b::check_rootfs_arch(t / "arm", osup::Arch::aarch64));
  CHECK_NOTHROW(b::check_rootfs_arch(t / "x86", osup::Arch::x86_64));
  CHECK(error_of([&] { b::check_rootfs_arch(t / "arm", osup::Arch::x86_64); }) ==
        "rootfs is for aarch64 (/bin/sh is an ELF aarch64 binary) but the image arch is x86_64; "
        "set \"arch\" in the spec or use --arch");
  CHECK_THAT(error_of([&] { b::check_rootfs_arch(t / "x86", osup::Arch::aarch64); }),
             Catch::StartsWith("rootfs is for x86_64 (/bin/sh is an ELF x86_64 binary)"));

  // usr-merged with an absolute link: /bin -> usr/bin, /usr/bin/sh -> /usr/bin/busybox. The
  // host's /usr/bin/busybox (if any) must not be what gets read.
  const std::string m = t / "merged";
  fs::create_directories(m + "/usr/bin");
  fs::copy_file(t / "arm/bin/busybox", m + "/usr/bin/busybox");
  fs::create_symlink("usr/bin", m + "/bin");
  fs::create_symlink("/usr/bin/busybox", m + "/usr/bin/sh");
  CHECK_NOTHROW(b::check_rootfs_arch(m, osup::Arch::aarch64));
  CHECK_THAT(error_of([&] { b::check_rootfs_arch(m, osup::Arch::x86_64); }),
             Catch::StartsWith("rootfs is for aarch64"));

  // /sbin/init of the other arch is caught too; a script init is fine.
  fs::create_directories(t / "x86/sbin");
  fs::copy_file(t / "arm/bin/busybox", t / "x86/sbin/init");
  CHECK_THAT(error_of([&] { b::check_rootfs_arch(t / "x86", osup::Arch::x86_64); }),
             Catch::StartsWith("rootfs is for aarch64 (/sbin/init is an ELF aarch64 binary)"));
  fs::remove(t / "x86/sbin/init");
  std::ofstream(t / "x86/sbin/init") << "#!/bin/sh\nexec /bin/sh\n";
  CHECK_NOTHROW(b::check_rootfs_arch(t / "x86", osup::Arch::x86_64));

  fs::create_directories(t / "empty/etc");
  CHECK_THAT(error_of([&] { b::check_rootfs_arch(t / "empty", osup::Arch::x86_64); }),
             Catch::Contains("has no /bin/sh"));
  fs::create_directories(t / "script/bin");
  std::ofstream(t / "script/bin/sh") << "#!/nothing\n";
  CHECK_THAT(error_of([&] { b::check_rootfs_arch(t / "script", osup::Arch::x86_64); }),
             Catch::Contains("/bin/sh in rootfs") && Catch::Contains("is not an ELF binary"));
}

TEST_CASE("rootfs: find_kernel picks the newest kernel and its initrd", "[unit]") {
  TempDir t;
  const std::string r = t / "r";
  CHECK_FALSE(b::find_kernel(r));
  fs::create_directories(r + "/boot");
  CHECK_FALSE(b::find_kernel(r));
  for (const char* f :
       {"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64",
        "initrd.img-6.1.0-9-amd64", "config-6.1.0-10-amd64"})
    std::ofstream(r + "/boot/" + f) << "data";
  fs::create_symlink("boot/vmlinuz-6.1.0-9-amd64", r + "/vmlinuz");
  auto k = b::find_kernel(r);
  REQUIRE(k);
  CHECK(k->version == "6.1.0-10-amd64");
  CHECK(k->kernel == r + "/boot/vmlinuz-6.1.0-10-amd64");
  CHECK(k->initrd == r + "/boot/initrd.img-6.1.0-10-amd64");

  fs::remove(r + "/boot/initrd.img-6.1.0-10-amd64");
  k = b::find_kernel(r);
  REQUIRE(k);
  CHECK(k->initrd.empty());

  // Only the /vmlinuz symlink (absolute, resolved inside the root) and /initrd.img.
  TempDir t2;
  const std::string s = t2 / "s";
  fs::create_directories(s + "/srv");
  std::ofstream(s + "/srv/vmlinuz-6.5.0-arm64") << "k";
  std::ofstream(s + "/srv/initrd") << "i";
  fs::create_symlink("/srv/vmlinuz-6.5.0-arm64", s + "/vmlinuz");
  fs::create_symlink("srv/initrd", s + "/initrd.img");
  k = b::find_kernel(s);
  REQUIRE(k);
  CHECK(k->kernel == s + "/srv/vmlinuz-6.5.0-arm64");
  CHECK(k->initrd == s + "/srv/initrd");
  CHECK(k->version == "6.5.0-arm64");
}
