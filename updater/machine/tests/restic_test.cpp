// osup data backup / restore against a real restic repository on a path. Skipped, saying
// so, where restic is not installed.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/process.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

struct DataMachine {
  test::TempDir dir;
  std::string home = dir / "home", file = dir / "machine.json";

  explicit DataMachine(const std::string& password_source) {
    std::ofstream(file) << R"({ "format": 1, "data": { "repository": ")" << dir.path()
                        << R"(/repo", )" << password_source << R"(, "paths": [")" << home
                        << R"("] } })";
    std::ofstream(dir / "pw") << "correct horse\n";
  }
  RunResult osup(const std::vector<std::string>& args, const RunOptions& o = {}) const {
    std::vector<std::string> argv = {test::osup_exe(), "--progress", "json", "data"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--file", file, "--json"});
    return test::run_cmd(argv, o);
  }
};

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("osup data: backup, then restore keeps newer local files unless forced",
          "[integration]") {
  if (!find_tool("restic")) {
    WARN("restic is not installed: skipped (apt-get install restic)");
    return;
  }
  DataMachine m(R"("password_file": "/nonexistent/osup-test-restic-pw")");
  // The password file named above does not exist: refused before restic runs.
  RunResult missing = m.osup({"backup"});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("backup password file") && Contains("cannot be read"));

  DataMachine d(R"("password_env": "OSUP_TEST_RESTIC_PW")");
  write(d.home + "/u/a.txt", "first\n");
  fs::create_directories(d.home + "/u/sub");
  test::write_random_file(d.home + "/u/sub/b.bin", uint64_t{300} * 1024, 7);
  const std::string b_before = read_text_file(d.home + "/u/sub/b.bin");
  CHECK_THAT(d.osup({"backup"}).err,
             Contains("OSUP_TEST_RESTIC_PW (data.password_env) is not set"));
  RunOptions pw;
  pw.env["OSUP_TEST_RESTIC_PW"] = "correct horse";
  const RunResult b1 = d.osup({"backup"}, pw);
  INFO(b1.err);
  REQUIRE(b1.exit_code == 0);
  const json j1 = json::parse(b1.out);
  CHECK(j1["created_repository"] == true);
  CHECK(j1["files"] == 2);
  CHECK(j1["bytes"] == 300 * 1024 + 6);
  CHECK_THAT(b1.err, Contains("\"backup\""));  // progress lines from restic's status
  CHECK(json::parse(d.osup({"backup"}, pw).out)["created_repository"] == false);

  RunOptions wrong;
  wrong.env["OSUP_TEST_RESTIC_PW"] = "battery staple";
  const RunResult bad = d.osup({"backup"}, wrong);
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Contains("wrong password (from the environment variable "
                               "OSUP_TEST_RESTIC_PW); is it the repository's password?"));

  // The user loses a.txt, edits b.bin after the backup and makes c.txt.
  fs::remove(d.home + "/u/a.txt");
  write(d.home + "/u/sub/b.bin", "edited later\n");
  write(d.home + "/u/c.txt", "new\n");
  const std::string staging = d.dir / "staging";
  const RunResult r1 = d.osup({"restore", "--staging", staging}, pw);
  INFO(r1.err);
  REQUIRE(r1.exit_code == 0);
  const json rj = json::parse(r1.out);
  CHECK(rj["restored"] == 1);
  CHECK(rj["kept_newer"] == json::array({d.home + "/u/sub/b.bin"}));
  CHECK(read_text_file(d.home + "/u/a.txt") == "first\n");
  CHECK(read_text_file(d.home + "/u/sub/b.bin") == "edited later\n");
  CHECK(read_text_file(d.home + "/u/c.txt") == "new\n");
  CHECK_FALSE(fs::exists(staging));

  const RunResult r2 = d.osup({"restore", "--staging", staging, "--force"}, pw);
  REQUIRE(r2.exit_code == 0);
  CHECK(json::parse(r2.out)["kept_newer"].empty());
  CHECK(read_text_file(d.home + "/u/sub/b.bin") == b_before);

  // A fresh machine: nothing under home yet; the restore brings the tree back.
  fs::remove_all(d.home);
  const RunResult r3 = d.osup({"restore", "--staging", staging}, pw);
  REQUIRE(r3.exit_code == 0);
  CHECK(read_text_file(d.home + "/u/a.txt") == "first\n");
  CHECK(read_text_file(d.home + "/u/sub/b.bin") == b_before);
}

TEST_CASE("osup data: restore brings back symlinks as links, their targets untouched",
          "[integration]") {
  if (!find_tool("restic")) {
    WARN("restic is not installed: skipped (apt-get install restic)");
    return;
  }
  DataMachine d(R"("password_env": "OSUP_TEST_RESTIC_PW")");
  RunOptions pw;
  pw.env["OSUP_TEST_RESTIC_PW"] = "correct horse";
  const std::string u = d.home + "/u";
  write(u + "/docs/notes.txt", "my notes\n");
  write(u + "/docs/deep/x.txt", "x\n");
  fs::create_symlink("docs/notes.txt", u + "/latest");         // a file link, relative
  fs::create_directory_symlink("docs/deep", u + "/shortcut");  // a directory link
  fs::create_symlink("/nonexistent/osup-target", u + "/dangling");
  const RunResult b = d.osup({"backup"}, pw);
  INFO(b.err);
  REQUIRE(b.exit_code == 0);

  const auto check_tree = [&] {
    CHECK(read_text_file(u + "/docs/notes.txt") == "my notes\n");
    CHECK(read_text_file(u + "/docs/deep/x.txt") == "x\n");
    CHECK(fs::is_symlink(u + "/latest"));
    CHECK(fs::read_symlink(u + "/latest") == "docs/notes.txt");
    CHECK(fs::is_symlink(u + "/shortcut"));
    CHECK(fs::read_symlink(u + "/shortcut") == "docs/deep");
    CHECK(read_text_file(u + "/shortcut/x.txt") == "x\n");
    CHECK(fs::is_symlink(u + "/dangling"));
    CHECK(fs::read_symlink(u + "/dangling") == "/nonexistent/osup-target");
    // Nothing else appeared: no copy of a target at a link's path or the other way round.
    std::vector<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(u))
      names.push_back(e.path().lexically_relative(u).string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"dangling", "docs", "docs/deep", "docs/deep/x.txt",
                                            "docs/notes.txt", "latest", "shortcut"});
  };
  const std::string staging = d.dir / "staging";
  // A fresh machine: the whole tree comes back, links as links.
  fs::remove_all(d.home);
  const RunResult r1 = d.osup({"restore", "--staging", staging}, pw);
  INFO(r1.err);
  REQUIRE(r1.exit_code == 0);
  CHECK(json::parse(r1.out)["restored"] == 5);
  CHECK(json::parse(r1.out)["kept_newer"].empty());
  check_tree();
  // Again over the restored tree, forced: each link is replaced by itself, not followed.
  const RunResult r2 = d.osup({"restore", "--staging", staging, "--force"}, pw);
  INFO(r2.err);
  REQUIRE(r2.exit_code == 0);
  CHECK(json::parse(r2.out)["restored"] == 5);
  check_tree();
}
