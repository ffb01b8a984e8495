#include "updater/machine/restic.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/error.h"
#include "base/process.h"
#include "updater/machine/disk_full.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace osup::machine {
namespace {

// restic's environment for DATA; the password source is checked here, before restic runs.
RunOptions restic_env(const DataSection& data) {
  RunOptions o;
  o.env["RESTIC_REPOSITORY"] = data.repository;
  if (data.password_file) {
    if (::access(data.password_file->c_str(), R_OK) != 0)
      fail("backup password file " + *data.password_file +
           " cannot be read; create it (mode 0600) or fix data.password_file");
    o.env["RESTIC_PASSWORD_FILE"] = *data.password_file;
  } else {
    const char* pw = std::getenv(data.password_env->c_str());
    if (!pw || !*pw)
      fail("backup password: the environment variable " + *data.password_env +
           " (data.password_env) is not set");
    o.env["RESTIC_PASSWORD"] = pw;
  }
  return o;
}

bool has(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// An S3 server's refusal of the key pair (restic 0.14 quotes minio-go's message): a missing
// key is anonymous, so "Access Denied"; an unknown or wrong one says so.
bool key_refused(const DataSection& data, const RunResult& r) {
  return data.repository.starts_with("s3:") &&
         (has(r.err, "Access Denied") || has(r.err, "access key ID you provided does not exist") ||
          has(r.err, "signature we calculated does not match") ||
          has(r.err, "InvalidAccessKeyId") || has(r.err, "SignatureDoesNotMatch"));
}

// restic 0.14 asks "Is there a repository at the following location?" after any failure
// to stat the repository's config: a refused S3 key or an unreachable server too. Missing
// is what a backend says for a missing file or bucket: a path "no such file or directory",
// sftp "file does not exist", rest "<config> does not exist", s3 "The specified bucket
// does not exist." / "The specified key does not exist.".
bool no_repository(const DataSection& data, const RunResult& r) {
  return has(r.err, "Is there a repository at the following location?") && !key_refused(data, r) &&
         (has(r.err, "no such file or directory") || has(r.err, "does not exist"));
}

// restic's reason: its "Fatal: " line (followed by the location for a repository it cannot
// open), else its last line.
std::string reason(const std::string& err) {
  const size_t at = err.rfind("Fatal: ");
  if (at == std::string::npos) return last_line(err);
  return last_line(err.substr(at + 7, err.find('\n', at) - at - 7));
}

// Runs restic; its failures become one line that says what to do.
RunResult restic(const DataSection& data, std::vector<std::string> args, const RunOptions& o) {
  args.insert(args.begin(), "restic");
  RunResult r = run(args, o);
  if (r.exit_code == 0) return r;
  const std::string where = "restic repository " + data.repository;
  if (r.err.find("wrong password") != std::string::npos)
    fail(where + ": wrong password (from " +
         (data.password_file ? "the file " + *data.password_file
                             : "the environment variable " + *data.password_env) +
         "); is it the repository's password?");
  if (says_disk_full(r.err))
    fail(where + ": restic " + args[1] +
         " ran out of disk space (no space left on device); free space on the repository's "
         "disk (a restore: on the data partition) and run it again");
  if (key_refused(data, r))
    fail(where + ": the S3 server refused the credentials (" + reason(r.err) +
         "); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for osup, or put them in root's "
         "~/.aws/credentials");
  if (no_repository(data, r))
    fail(where + " does not exist; check data.repository (osup data backup creates it)");
  std::string detail = reason(r.err);
  fail(where + ": restic " + args[1] + " failed (exit " + std::to_string(r.exit_code) + ")" +
       (detail.empty() ? "" : ": " + detail));
}

// Moves one staged file into place unless the local copy is newer; true when moved.
bool place(const fs::path& staged, const fs::path& dest, bool force) {
  struct stat s {
  }, d{};
  if (::lstat(dest.c_str(), &d) == 0) {
    ::lstat(staged.c_str(), &s);
    const auto ns = [](const timespec& t) { return t.tv_sec * 1'000'000'000LL + t.tv_nsec; };
    if (!force && ns(d.st_mtim) > ns(s.st_mtim)) return false;
    if (S_ISDIR(d.st_mode))
      fail(dest.string() + " is a directory locally but a file in the backup");
  }
  fs::create_directories(dest.parent_path());
  std::error_code ec;
  fs::rename(staged, dest, ec);
  if (ec == std::errc::cross_device_link)
    run_checked({"cp", "-a", "--remove-destination", staged.string(), dest.string()});
  else if (ec)
    fail("moving the restored " + dest.string() + " into place: " + ec.message());
  return true;
}

}  // namespace

BackupResult backup_data(const DataSection& data, ProgressMode progress) {
  RunOptions o = restic_env(data);
  BackupResult res;
  const auto start = std::chrono::steady_clock::now();
  RunResult probe = run({"restic", "cat", "config"}, o);
  if (probe.exit_code != 0 && no_repository(data, probe)) {
    (void)restic(data, {"init"}, o);
    res.created_repository = true;
  } else if (probe.exit_code != 0) {
    (void)restic(data, {"cat", "config"}, o);  // the same failure, said as one line
  }
  std::optional<Progress> bar;  // from restic's first status line, which has the total
  o.on_stdout_line = [&](const std::string& line) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("message_type", "") != "status") return;
    if (!bar) bar.emplace("backup", j.value("total_bytes", uint64_t{0}), progress);
    bar->set(j.value("bytes_done", uint64_t{0}));
  };
  std::vector<std::string> args = {"backup", "--json"};
  args.insert(args.end(), data.paths.begin(), data.paths.end());
  const RunResult r = restic(data, args, o);
  if (bar) bar->finish();
  const json j = json::parse(last_line(r.out), nullptr, false);
  if (j.is_discarded() || j.value("message_type", "") != "summary")
    fail("restic backup finished without its summary; run restic snapshots to check");
  res.snapshot = j.value("snapshot_id", "");
  res.files = j.value("total_files_processed", uint64_t{0});
  res.bytes = j.value("total_bytes_processed", uint64_t{0});
  res.added_bytes = j.value("data_added", uint64_t{0});
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

RestoreResult restore_data(const DataSection& data, const RestoreOptions& options) {
  const RunOptions o = restic_env(data);
  RestoreResult res;
  const json snaps = json::parse(restic(data, {"snapshots", "--json"}, o).out, nullptr, false);
  if (!snaps.is_array() || snaps.empty())
    fail("restic repository " + data.repository + " has no snapshot; run osup data backup first");
  res.snapshot = options.snapshot;
  const fs::path staging = options.staging;
  fs::remove_all(staging);  // osup's own: a leftover of a cut restore
  fs::create_directories(staging);
  (void)restic(data, {"restore", options.snapshot, "--target", staging.string()}, o);
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(staging)) {
    if (!e.is_directory() || e.is_symlink()) {
      files.push_back(e.path());
      continue;
    }
    // A missing directory gets the backup's mode and owner (parents come first).
    const fs::path dest = fs::path("/") / e.path().lexically_relative(staging);
    struct stat st {};
    if (fs::exists(dest) || ::lstat(e.path().c_str(), &st) != 0) continue;
    fs::create_directories(dest);
    (void)!::chown(dest.c_str(), st.st_uid, st.st_gid);
    ::chmod(dest.c_str(), st.st_mode & 07777);
  }
  Progress bar("restore", files.size(), options.progress);
  for (const fs::path& f : files) {
    // Lexically: fs::relative resolves symlinks, and put a restored link at its target.
    const fs::path dest = fs::path("/") / f.lexically_relative(staging);
    const uint64_t size = fs::is_regular_file(fs::symlink_status(f)) ? fs::file_size(f) : 0;
    if (place(f, dest, options.force)) {
      ++res.restored;
      res.bytes += size;
    } else {
      res.kept_newer.push_back(dest.string());
    }
    bar.advance(1);
  }
  bar.finish();
  fs::remove_all(staging);
  return res;
}

}  // namespace osup::machine
