// Rootfs sources (tarball, directory, debootstrap), overlay, hooks, preparation, arch check
// and kernel discovery, on tiny real busybox root filesystems.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "builder/rootfs/elf_check.h"
#include "builder/rootfs/prepare.h"
#include "builder/rootfs/source.h"
#include "base/error.h"
#include "base/fd.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using osup::test::TempDir;
namespace b = osup::build;

namespace {

// Builds a tar with python3's tarfile, entry by entry, so the test controls every header
// field: names, link targets, owners, modes, device numbers, pax xattrs.
void make_tar(const std::string& path, const json& entries, const std::string& mode = "w") {
  static const char* kScript = R"(
import io, json, sys, tarfile
path, mode, entries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as t:
    for e in entries:
        i = tarfile.TarInfo(e["name"])
        i.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                  "lnk": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE}[e.get("type", "file")]
        i.linkname = e.get("target", "")
        i.uid, i.gid = e.get("uid", 0), e.get("gid", 0)
        i.mode = e.get("mode", 0o755 if i.type == tarfile.DIRTYPE else 0o644)
        i.mtime = e.get("mtime", 1700000000)
        i.devmajor, i.devminor = e.get("major", 0), e.get("minor", 0)
        if "xattrs" in e:
            i.pax_headers = {"SCHILY.xattr." + k: v for k, v in e["xattrs"].items()}
        data = e.get("data", "").encode()
        i.size = len(data) if i.type == tarfile.REGTYPE else 0
        t.addfile(i, io.BytesIO(data) if i.size else None)
)";
  osup::run_checked({"python3", "-c", kScript, path, mode, entries.dump()});
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const osup::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string slurp(const std::string& path) { return osup::read_text_file(path); }

bool lexists(const std::string& p) { return fs::exists(fs::symlink_status(p)); }

}  // namespace

TEST_CASE("rootfs: resolve_in_root follows symlinks inside the root only", "[unit]") {
  TempDir t;
  const std::string r = t / "root";
  fs::create_directories(r + "/usr/bin");
  fs::create_symlink("usr/bin", r + "/bin");
  fs::create_symlink("/usr/bin/dash", r + "/usr/bin/sh");
  fs::create_symlink("../../../../../../etc", r + "/usr/escape");
  CHECK(b::resolve_in_root(r, "/bin/sh") == r + "/usr/bin/dash");
  CHECK(b::resolve_in_root(r, "/bin/sh", false) == r + "/usr/bin/sh");
  CHECK(b::resolve_in_root(r, "/usr/escape/passwd") == r + "/etc/passwd");
  CHECK(b::resolve_in_root(r, "../../x") == r + "/x");
  CHECK(b::resolve_in_root(r, "/") == r);
  fs::create_symlink("loop2", r + "/loop1");
  fs::create_symlink("loop1", r + "/loop2");
  CHECK_THROWS_WITH(b::resolve_in_root(r, "/loop1"), Catch::StartsWith("too many levels"));
}

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

TEST_CASE("rootfs: tarball keeps owners, setuid, xattrs and device nodes", "[unit]") {
  TempDir t;
  make_tar(
      t / "meta.tar",
      json::array(
          {{{"name", "./usr"}, {"type", "dir"}},
           {{"name", "./usr/bin"}, {"type", "dir"}},
           {{"name", "./usr/bin/su"}, {"data", "elf"}, {"mode", 04755}},
           {{"name", "./usr/bin/ping"}, {"data", "ping"}, {"xattrs", {{"user.osup", "hello"}}}},
           {{"name", "./home"}, {"type", "dir"}, {"uid", 1000}, {"gid", 1001}, {"mode", 0700}},
           {{"name", "./dev"}, {"type", "dir"}},
           {{"name", "./dev/null"}, {"type", "chr"}, {"major", 1}, {"minor", 3}, {"mode", 0666}},
           {{"name", "./usr/bin/su2"}, {"type", "lnk"}, {"target", "./usr/bin/su"}},
           {{"name", "./etc-link"}, {"type", "sym"}, {"target", "/etc"}}}));
  b::extract_tarball(t / "meta.tar", t / "d");
  struct stat st {};
  REQUIRE(::stat((t / "d/usr/bin/su").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_mtime == 1700000000);
  CHECK(st.st_nlink == 2);  // the hard link inside the archive is a hard link again
  REQUIRE(::stat((t / "d/home").c_str(), &st) == 0);
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 1001);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::lstat((t / "d/dev/null").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  char value[16] = {};
  CHECK(::getxattr((t / "d/usr/bin/ping").c_str(), "user.osup", value, sizeof value) == 5);
  CHECK(std::string(value) == "hello");
  // Absolute symlink targets are normal in a rootfs and kept verbatim.
  CHECK(fs::read_symlink(t / "d/etc-link") == "/etc");
}

TEST_CASE("rootfs: malicious tarballs are refused and write nothing outside dest", "[unit]") {
  TempDir t;
  const std::string marker = "osup-evil-" + std::to_string(::getpid());
  fs::create_directories(t / "outside");
  struct Case {
    const char* what;
    json entries;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"absolute path", json::array({{{"name", t / ("outside/" + marker)}, {"data", "x"}}}),
       "has an absolute path; refusing an unsafe tarball"},
      {"dotdot", json::array({{{"name", "../outside/" + marker}, {"data", "x"}}}),
       "contains '..'; refusing an unsafe tarball"},
      {"symlink then write through",
       json::array({{{"name", "link"}, {"type", "sym"}, {"target", t / "outside"}},
                    {{"name", "link/" + marker}, {"data", "x"}}}),
       "Cannot extract through symlink link"},
      {"relative symlink then write through",
       json::array({{{"name", "up"}, {"type", "sym"}, {"target", "../outside"}},
                    {{"name", "up/" + marker}, {"data", "x"}}}),
       "Cannot extract through symlink up"},
      {"hardlink to an absolute path",
       json::array({{{"name", "passwd"}, {"type", "lnk"}, {"target", "/etc/passwd"}}}),
       "is a hard link to '/etc/passwd' outside the rootfs"},
      {"hardlink with dotdot",
       json::array({{{"name", "passwd"}, {"type", "lnk"}, {"target", "../../../../etc/passwd"}}}),
       "is a hard link to '../../../../etc/passwd' outside the rootfs"},
  };
  struct stat host_passwd {};
  REQUIRE(::stat("/etc/passwd", &host_passwd) == 0);
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string tar = t / ("evil" + std::to_string(n) + ".tar");
    const std::string dest = t / ("dest" + std::to_string(n++));
    make_tar(tar, c.entries);
    fs::create_directories(dest);
    std::string err = error_of([&] { b::extract_tarball(tar, dest); });
    CHECK_THAT(err,
               Catch::StartsWith("extracting " + tar + ": entry '") && Catch::Contains(c.expected));
    CHECK_FALSE(lexists(t / ("outside/" + marker)));
    CHECK_FALSE(lexists("/etc/" + marker));
  }
  struct stat after {};
  REQUIRE(::stat("/etc/passwd", &after) == 0);
  CHECK(after.st_nlink == host_passwd.st_nlink);  // no hard link was made to it
}

TEST_CASE("rootfs: garbage or missing tarball gives a clear error", "[unit]") {
  TempDir t;
  std::ofstream(t / "junk.tar") << "this is not a tar archive at all, not even close......";
  fs::create_directories(t / "d");
  CHECK_THAT(error_of([&] { b::extract_tarball(t / "junk.tar", t / "d"); }),
             Catch::StartsWith("extracting " + (t / "junk.tar") + ": not a valid tar"));
  CHECK_THAT(error_of([&] { b::extract_tarball(t / "none.tar", t / "d"); }),
             Catch::StartsWith("extracting " + (t / "none.tar") + ": cannot open it"));
}

TEST_CASE("rootfs: overlay replaces files, never writes through symlinks, is root-owned",
          "[unit]") {
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, root);
  // A usr-merged layout and an absolute symlink pointing at a "host" file.
  fs::create_directories(root + "/usr/lib");
  std::ofstream(t / "hostfile") << "host\n";
  fs::create_symlink(t / "hostfile", root + "/etc/resolv.conf");
  fs::create_symlink("usr/lib", root + "/lib");

  const std::string ov = t / "overlay";
  fs::create_directories(ov + "/etc/ssh");
  fs::create_directories(ov + "/lib/systemd");
  std::ofstream(ov + "/etc/resolv.conf") << "nameserver 192.0.2.1\n";
  std::ofstream(ov + "/etc/motd") << "hello\n";
  std::ofstream(ov + "/lib/systemd/osup.conf") << "x\n";
  fs::create_symlink("motd", ov + "/etc/motd-link");
  fs::permissions(ov + "/etc/motd", fs::perms(0640));
  REQUIRE(::chown((ov + "/etc/motd").c_str(), 1000, 1000) == 0);
  fs::permissions(root + "/etc", fs::perms(0751));

  b::apply_overlay(ov, root);
  CHECK(slurp(t / "hostfile") == "host\n");
  CHECK(fs::is_regular_file(fs::symlink_status(root + "/etc/resolv.conf")));
  CHECK(slurp(root + "/etc/resolv.conf") == "nameserver 192.0.2.1\n");
  struct stat st {};
  REQUIRE(::stat((root + "/etc/motd").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK(fs::read_symlink(root + "/etc/motd-link") == "motd");
  // Through the rootfs's /lib -> usr/lib symlink, which stays a symlink.
  CHECK(fs::is_symlink(root + "/lib"));
  CHECK(slurp(root + "/usr/lib/systemd/osup.conf") == "x\n");
  // Existing directories keep their mode.
  CHECK((fs::status(root + "/etc").permissions() & fs::perms::all) == fs::perms(0751));

  fs::create_directories(t / "ov2/etc");
  std::ofstream(t / "ov2/etc/ssh") << "file over a dir\n";
  CHECK_THAT(error_of([&] { b::apply_overlay(t / "ov2", root); }),
             Catch::Contains("'etc/ssh' would replace the directory /etc/ssh"));
}

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

TEST_CASE("rootfs: prepare strips machine state, installs the key, stamps os-release", "[unit]") {
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, root);
  fs::create_directories(root + "/var/lib/dbus");
  fs::create_directories(root + "/var/lib/apt/lists/partial");
  fs::create_directories(root + "/var/log/journal");
  fs::create_directories(root + "/var/cache/debconf");
  fs::create_directories(root + "/var/tmp");
  std::ofstream(root + "/var/lib/dbus/machine-id") << "0123\n";
  std::ofstream(root + "/etc/ssh/ssh_host_rsa_key.pub") << "pub\n";
  std::ofstream(root + "/etc/ssh/sshd_config") << "keep me\n";
  std::ofstream(root + "/var/lib/apt/lists/partial/x") << "x\n";
  std::ofstream(root + "/var/log/journal/system.journal") << "j\n";
  std::ofstream(root + "/var/cache/debconf/config.dat-old") << "old\n";
  std::ofstream(root + "/var/cache/debconf/config.dat") << "new\n";
  std::ofstream(root + "/tmp/junk") << "x\n";
  std::ofstream(root + "/var/tmp/junk") << "x\n";
  std::ofstream(root + "/etc/os-release", std::ios::app) << "IMAGE_ID=old\nIMAGE_VERSION=0.1\n";
  // A machine-id symlink pointing at a host path must be replaced, not written through.
  std::ofstream(t / "host-machine-id") << "host\n";
  fs::remove(root + "/etc/machine-id");
  fs::create_symlink(t / "host-machine-id", root + "/etc/machine-id");

  b::PrepareOptions o{"demo", "1.2.3", "-----BEGIN PUBLIC KEY-----\nabc\n", "ci-2024", 1600000000};
  b::prepare_rootfs(root, o);

  CHECK(slurp(t / "host-machine-id") == "host\n");
  CHECK(fs::is_regular_file(fs::symlink_status(root + "/etc/machine-id")));
  CHECK(fs::file_size(root + "/etc/machine-id") == 0);
  for (const char* gone :
       {"/var/lib/dbus/machine-id", "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_rsa_key.pub", "/etc/hostname", "/var/log/syslog",
        "/var/log/journal/system.journal", "/var/lib/apt/lists/deb.debian.org_dists",
        "/var/lib/apt/lists/partial/x", "/var/cache/debconf/config.dat-old", "/tmp/junk",
        "/var/tmp/junk"}) {
    INFO(gone);
    CHECK_FALSE(lexists(root + gone));
  }
  CHECK(slurp(root + "/etc/ssh/sshd_config") == "keep me\n");
  CHECK(fs::is_directory(root + "/var/log/journal"));
  CHECK(fs::is_directory(root + "/var/lib/apt/lists/partial"));
  CHECK(fs::is_regular_file(root + "/var/cache/debconf/config.dat"));
  CHECK(slurp(root + "/usr/lib/osup/keys/ci-2024.pem") == o.public_key_pem);

  CHECK(fs::read_symlink(root + "/etc/os-release") == "../usr/lib/os-release");
  const std::string osr = slurp(root + "/usr/lib/os-release");
  CHECK_THAT(osr, Catch::StartsWith("NAME=\"Busybox Test\"\nID=busybox\n"));
  CHECK_THAT(osr, Catch::EndsWith("IMAGE_ID=\"demo\"\nIMAGE_VERSION=\"1.2.3\"\n"));
  CHECK_THAT(osr, !Catch::Contains("IMAGE_ID=old") && !Catch::Contains("0.1"));

  // Every mtime is clamped, symlinks included; older ones are kept.
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    struct stat st {};
    REQUIRE(::lstat(e.path().c_str(), &st) == 0);
    INFO(e.path());
    CHECK(st.st_mtime <= 1600000000);
  }
  struct stat st {};
  REQUIRE(::lstat((root + "/bin/sh").c_str(), &st) == 0);
  CHECK(st.st_mtime == 1600000000);

  // Running it again is stable (os-release keeps one IMAGE_ID).
  b::prepare_rootfs(root, o);
  const std::string again = slurp(root + "/usr/lib/os-release");
  CHECK(again == osr);

  o.key_id = "../evil";
  CHECK_THAT(error_of([&] { b::prepare_rootfs(root, o); }),
             Catch::Contains("invalid key id '../evil'"));
}

TEST_CASE("rootfs: prepare creates os-release when the rootfs has none", "[unit]") {
  TempDir t;
  fs::create_directories(t / "r/etc");
  b::prepare_rootfs(t / "r", {"demo", "2", "", "", std::nullopt});
  CHECK(slurp(t / "r/usr/lib/os-release") ==
        "NAME=\"demo\"\nID=demo\nIMAGE_ID=\"demo\"\nIMAGE_VERSION=\"2\"\n");
  CHECK(slurp(t / "r/etc/os-release") == slurp(t / "r/usr/lib/os-release"));
  CHECK(fs::file_size(t / "r/etc/machine-id") == 0);
  CHECK_FALSE(fs::exists(t / "r/usr/lib/osup"));
}

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

TEST_CASE("rootfs: debootstrap results come from the cache keyed by their parameters", "[unit]") {
  TempDir t;
  b::DebootstrapSource d;
  d.cache = t / "cache";
  d.packages = {"systemd", "udev"};
  const std::string path = b::debootstrap_cache_path(d, osup::Arch::aarch64);
  CHECK_THAT(path, Catch::StartsWith(t / "cache/debootstrap/bookworm-arm64-") &&
                       Catch::EndsWith(".tar.zst"));
  auto other = d;
  other.packages = {"udev", "systemd"};  // order does not matter
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) == path);
  other.packages = {"udev"};
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) != path);
  other = d;
  other.mirror = "http://mirror.example/debian";
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) != path);
  CHECK(b::debootstrap_cache_path(d, osup::Arch::x86_64) != path);
  ::setenv("OSUP_CACHE_DIR", (t / "env-cache").c_str(), 1);
  other = d;
  other.cache.reset();
  CHECK_THAT(b::debootstrap_cache_path(other, osup::Arch::aarch64),
             Catch::StartsWith(t / "env-cache/debootstrap/"));
  ::unsetenv("OSUP_CACHE_DIR");

  // A cached foreign-arch rootfs is used as is: no debootstrap, no network.
  osup::test::make_busybox_rootfs(osup::Arch::aarch64, t / "bb");
  REQUIRE(::chown((t / "bb/etc/hostname").c_str(), 42, 43) == 0);
  fs::create_directories(fs::path(path).parent_path());
  b::create_tarball(t / "bb", path);
  b::Spec spec;
  spec.arch = osup::Arch::aarch64;
  spec.rootfs = d;
  b::populate_rootfs(spec, t / "dest");
  CHECK_NOTHROW(b::check_rootfs_arch(t / "dest", osup::Arch::aarch64));
  struct stat st {};
  REQUIRE(::stat((t / "dest/etc/hostname").c_str(), &st) == 0);
  CHECK(st.st_uid == 42);
  CHECK(st.st_gid == 43);
}

TEST_CASE("rootfs: a missing debootstrap names its Debian package", "[unit]") {
  TempDir t;
  fs::create_directories(t / "empty");
  b::DebootstrapSource d;
  d.cache = t / "cache";
  b::Spec spec;
  spec.arch = osup::host_arch();
  spec.rootfs = d;
  ::setenv("OSUP_TOOL_PATH", (t / "empty").c_str(), 1);  // debootstrap is in /usr/sbin
  std::string err = error_of([&] { b::populate_rootfs(spec, t / "dest"); });
  ::unsetenv("OSUP_TOOL_PATH");
  CHECK(err ==
        "bootstrapping Debian: debootstrap not found; install the Debian package debootstrap "
        "(apt-get install debootstrap)");
}

TEST_CASE("rootfs: debootstrap a minbase bookworm for the host arch, then from the cache",
          "[.][debootstrap]") {
  TempDir t;
  b::Spec spec;
  spec.arch = osup::host_arch();
  b::DebootstrapSource d;
  d.cache = t / "cache";
  spec.rootfs = d;
  auto start = std::chrono::steady_clock::now();
  b::populate_rootfs(spec, t / "first");
  auto mid = std::chrono::steady_clock::now();
  CHECK_NOTHROW(b::check_rootfs_arch(t / "first", spec.arch));
  CHECK(fs::exists(t / "first/usr/bin/apt-get"));
  REQUIRE(fs::is_directory(t / "cache/debootstrap"));
  CHECK(std::distance(fs::directory_iterator(t / "cache/debootstrap"), {}) == 1);

  b::populate_rootfs(spec, t / "second");
  auto end = std::chrono::steady_clock::now();
  CHECK(fs::exists(t / "second/usr/bin/apt-get"));
  CHECK(fs::read_symlink(t / "second/bin") == fs::read_symlink(t / "first/bin"));
  CHECK(slurp(t / "second/etc/debian_version") == slurp(t / "first/etc/debian_version"));
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  std::cerr << "debootstrap: " << duration_cast<seconds>(mid - start).count()
            << " s, from cache: " << duration_cast<seconds>(end - mid).count() << " s\n";
  CHECK(end - mid < mid - start);
}
