// extract_tarball on tarballs built header by header: metadata kept, unsafe entries refused.
#include "builder/rootfs/tarball.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/process.h"
#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::lexists;
using osup::test::TempDir;
namespace b = osup::build;
using nlohmann::json;

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

}  // namespace

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
