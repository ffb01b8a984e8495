// osup data backup / restore with a restic repository on S3, served by Ceph's real RADOS
// Gateway on a one-node cluster the test starts on 127.0.0.1 (tests/support/ceph_rgw.h).
// restic takes the key pair from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or from the
// shared credentials file ($AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials); osup
// passes its environment through and never holds the secret. Skipped, saying so, where
// Ceph or restic is missing.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/process.h"
#include "tests/support/ceph_rgw.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

void write(const std::string& path, const std::string& text, fs::perms mode = fs::perms(0644)) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
  fs::permissions(path, mode);
}

std::string credentials(const std::string& key, const std::string& secret) {
  return "[default]\naws_access_key_id = " + key + "\naws_secret_access_key = " + secret + "\n";
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("osup data: backup to and restore from a restic repository on S3 (real radosgw)",
          "[integration]") {
  if (!find_tool("restic") || !find_tool("ceph-mon") || !find_tool("ceph-osd") ||
      !find_tool("radosgw")) {
    WARN(
        "restic, ceph-mon, ceph-osd or radosgw is not installed: skipped "
        "(apt-get install restic ceph-mon ceph-osd radosgw)");
    return;
  }
  test::CephRgw rgw;
  test::TempDir dir;
  const std::string home = dir / "home", bucket = "osup-backup";
  const std::string repo = "s3:" + rgw.endpoint() + "/" + bucket;
  write(home + "/u/a.txt", "over s3\n");
  fs::create_directories(home + "/u/sub");
  test::write_random_file(home + "/u/sub/b.bin", uint64_t{3} * 1024 * 1024, 12);
  const std::string b = read_text_file(home + "/u/sub/b.bin");
  write(dir / "pw", "s3 horse\n", fs::perms(0600));
  const auto machine = [&](const std::string& file, const std::string& repository) {
    write(file, R"({ "format": 1, "data": { "repository": ")" + repository +
                    R"(", "password_file": ")" + (dir / "pw") + R"(", "paths": [")" + home +
                    R"("] } })");
  };
  machine(dir / "machine.json", repo);
  // Every run gets its own HOME and empty AWS_* variables: nothing from the host's
  // environment or root's real ~/.aws takes part (restic treats empty as unset).
  const auto env = [&](const std::string& key, const std::string& secret, const std::string& file) {
    RunOptions o;
    o.env = {{"HOME", dir / "roothome"},
             {"AWS_ACCESS_KEY_ID", key},
             {"AWS_SECRET_ACCESS_KEY", secret},
             {"AWS_SHARED_CREDENTIALS_FILE", file},
             {"AWS_PROFILE", ""},
             {"AWS_SESSION_TOKEN", ""}};
    return o;
  };
  const auto osup = [&](const std::vector<std::string>& args, const RunOptions& o,
                        const std::string& file) {
    std::vector<std::string> argv = {test::osup_exe(), "--progress", "none", "data"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--file", file, "--json"});
    return test::run_cmd(argv, o);
  };

  // The key pair in the environment: restic makes the bucket and the repository in it.
  const RunOptions by_env = env(rgw.access_key(), rgw.secret_key(), "");
  const RunResult backup = osup({"backup"}, by_env, dir / "machine.json");
  INFO(backup.err);
  REQUIRE(backup.exit_code == 0);
  const json j = json::parse(backup.out);
  CHECK(j["created_repository"] == true);
  CHECK(j["files"] == 2);
  const double backup_seconds = j["seconds"];
  // The bucket really holds restic's repository.
  CHECK_THAT(rgw.bucket_list(bucket), Contains("\"name\": \"config\""));
  // A second repository under a prefix of the same bucket: the bucket is there, its
  // config key is not (S3's other "does not exist"), and osup creates it.
  machine(dir / "second.json", repo + "/second");
  const RunResult second = osup({"backup"}, by_env, dir / "second.json");
  INFO(second.err);
  CHECK(second.exit_code == 0);
  CHECK(json::parse(second.out)["created_repository"] == true);
  CHECK_THAT(rgw.bucket_list(bucket), Contains("\"name\": \"second/config\""));

  // The key pair in root's ~/.aws/credentials (what the docs tell users): restore.
  write(dir / "roothome/.aws/credentials", credentials(rgw.access_key(), rgw.secret_key()),
        fs::perms(0600));
  fs::remove_all(home);
  const auto restore_start = std::chrono::steady_clock::now();
  const RunResult restore =
      osup({"restore", "--staging", dir / "staging"}, env("", "", ""), dir / "machine.json");
  const double restore_seconds = seconds_since(restore_start);
  INFO(restore.err);
  REQUIRE(restore.exit_code == 0);
  CHECK(json::parse(restore.out)["restored"] == 2);
  CHECK(read_text_file(home + "/u/a.txt") == "over s3\n");
  CHECK(read_text_file(home + "/u/sub/b.bin") == b);
  fs::remove(dir / "roothome/.aws/credentials");

  // A wrong secret from $AWS_SHARED_CREDENTIALS_FILE: one line naming the repository and
  // what to set; the repository is not taken for missing (no `restic init` attempt).
  write(dir / "wrong", credentials(rgw.access_key(), "not-the-secret"), fs::perms(0600));
  const RunResult wrong = osup({"backup"}, env("", "", dir / "wrong"), dir / "machine.json");
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(last_line(wrong.err), Contains("restic repository " + repo + ": the S3 server") &&
                                       Contains("refused the credentials") &&
                                       Contains("AWS_ACCESS_KEY_ID") &&
                                       Contains("~/.aws/credentials"));
  // No key at all (anonymous): the same advice for restore.
  const RunResult none =
      osup({"restore", "--staging", dir / "staging"}, env("", "", ""), dir / "machine.json");
  CHECK(none.exit_code == 1);
  CHECK_THAT(last_line(none.err),
             Contains("restic repository " + repo) && Contains("AWS_SECRET_ACCESS_KEY"));

  // The gateway gone: one line naming the repository.
  rgw.stop_gateway();
  const RunResult gone = osup({"backup"}, by_env, dir / "machine.json");
  CHECK(gone.exit_code == 1);
  CHECK_THAT(last_line(gone.err),
             Contains("restic repository " + repo) && Contains("connection refused"));
  WARN("radosgw on a one-node Ceph cluster: up in " << rgw.startup_seconds() << " s; backup "
                                                    << backup_seconds << " s, restore "
                                                    << restore_seconds << " s (3 MiB)");
}
