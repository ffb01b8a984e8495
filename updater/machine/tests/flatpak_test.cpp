// osup apply with the real flatpak: a busybox runtime and app built offline into a local
// OSTree repository (two commits of the app), served by file://, installed into a private
// system installation ($FLATPAK_SYSTEM_DIR) so the host's is never touched. Skipped,
// saying so, where flatpak is not installed.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/process.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using Catch::Matchers::Contains;

namespace {

constexpr const char* kApp = "org.osuptest.Hello";

std::string host_flatpak_arch() {
  static const std::string arch = last_line(run_checked({"flatpak", "--default-arch"}).out);
  return arch;
}

void write_file(const fs::path& p, const std::string& text, fs::perms mode = fs::perms(0644)) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
  fs::permissions(p, mode);
}

// An app NAME whose command `hello` prints GREETING, exported to REPO's BRANCH; returns the
// new commit.
std::string export_app(const fs::path& work, const fs::path& repo, const std::string& name,
                       const std::string& greeting) {
  const fs::path app = work / name;
  fs::remove_all(app);
  write_file(app / "files/bin/hello", "#!/usr/bin/sh\necho " + greeting + "\n", fs::perms(0755));
  write_file(app / "metadata", "[Application]\nname=" + name + "\nruntime=org.osuptest.Platform/" +
                                   host_flatpak_arch() + "/1\ncommand=hello\n");
  run_checked({"flatpak", "build-finish", app});
  run_checked({"flatpak", "build-export", repo, app, "stable"});
  run_checked({"flatpak", "build-update-repo", repo});
  return last_line(run_checked({"cat", repo / ("refs/heads/app/" + name + "/" +
                                               host_flatpak_arch() + "/stable")})
                       .out);
}

// A file:// repository with a busybox runtime (its /usr) and the app; the system
// installation is private to the test.
struct FlatpakSandbox {
  test::TempDir dir;
  fs::path repo = dir / "repo", system = dir / "system";
  std::string v1, v2;

  FlatpakSandbox() {
    setenv("FLATPAK_SYSTEM_DIR", system.c_str(), 1);
    const fs::path rt = dir / "runtime";
    test::make_busybox_rootfs(host_arch(), rt / "usr");
    fs::create_directories(rt / "files");  // build-export wants it; a runtime exports usr/
    write_file(rt / "metadata",
               "[Runtime]\nname=org.osuptest.Platform\nruntime=org.osuptest.Platform/" +
                   host_flatpak_arch() + "/1\nsdk=org.osuptest.Platform/" + host_flatpak_arch() +
                   "/1\n");
    run_checked({"flatpak", "build-export", "--runtime", repo, rt, "1"});
    v1 = export_app(dir.path(), repo, kApp, "hello v1");
    v2 = export_app(dir.path(), repo, kApp, "hello v2");
    (void)export_app(dir.path(), repo, "org.osuptest.Other", "other");
  }
  ~FlatpakSandbox() { unsetenv("FLATPAK_SYSTEM_DIR"); }
  [[nodiscard]] std::string flatpak(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"flatpak"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_checked(argv).out;
  }
  [[nodiscard]] std::string commit() const {
    return last_line(flatpak({"info", "--system", "--show-commit", kApp}));
  }

  RunResult apply(const std::string& json_text, const std::vector<std::string>& extra = {}) {
    std::ofstream(dir / "machine.json") << json_text;
    std::vector<std::string> argv = {
        test::osup_exe(),   "apply",      dir / "machine.json", "--state",
        dir / "state.json", "--unit-dir", dir / "units",        "--update-conf",
        dir / "update.conf"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_cmd(argv);
  }
  // osup export --json, seeing only flatpak (the host's podman is not looked at).
  [[nodiscard]] RunResult export_json() const {
    const fs::path tools = dir / "tools";
    fs::create_directories(tools);
    if (!fs::exists(tools / "flatpak"))
      fs::create_symlink(*find_tool("flatpak"), tools / "flatpak");
    RunOptions o;
    o.env = {{"OSUP_TOOL_PATH", tools.string()}};
    return test::run_cmd({test::osup_exe(), "export", "--json", "--file", dir / "none.json",
                          "--update-conf", dir / "update.conf"},
                         o);
  }
  // The machine file with the test remote and the app pinned to COMMIT; EXTRA_APPS and
  // EXTRA_REMOTES are JSON members appended to the two objects.
  [[nodiscard]] std::string file(const std::string& commit, const std::string& permissions,
                                 const std::string& extra_apps = "",
                                 const std::string& extra_remotes = "") const {
    return R"({ "format": 1, "os": { "channel": "https://updates.example.com/stable/" }, "apps": { "remotes": { "test": { "url": "file://)" +
           repo.string() + R"(", "gpg_verify": false } )" + extra_remotes +
           R"( }, "flatpaks": { ")" + kApp + R"(": { "remote": "test", "commit": ")" + commit +
           R"(", "permissions": )" + permissions + " } " + extra_apps + " } } }";
  }
};

// A throwaway GnuPG home with one signing key (ed25519, no passphrase), made offline; KEY
// is its public key exported for the machine file.
struct GpgKey {
  test::TempDir home;
  std::string key = home / "public.gpg", fingerprint;

  explicit GpgKey(const std::string& name) {
    (void)gpg(
        {"--quick-gen-key", name + " <" + name + "@osup.invalid>", "ed25519", "sign", "never"});
    const std::string listing = gpg({"--with-colons", "--list-secret-keys"});
    const size_t fpr = listing.find("\nfpr:");
    REQUIRE(fpr != std::string::npos);
    const size_t start = listing.find_first_not_of(':', fpr + 5), end = listing.find(':', start);
    fingerprint = listing.substr(start, end - start);
    (void)gpg({"--output", key, "--export", fingerprint});
  }
  ~GpgKey() {
    RunOptions o;
    o.env["GNUPGHOME"] = home.path();
    (void)run({"gpgconf", "--kill", "gpg-agent"}, o);
  }
  [[nodiscard]] std::string gpg(std::vector<std::string> args) const {
    args.insert(args.begin(),
                {"gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""});
    RunOptions o;
    o.env["GNUPGHOME"] = home.path();
    return run_checked(args, o).out;
  }
  // Signs the newest commit of every ref in REPO and its summary.
  void sign(const fs::path& repo) const {
    const std::vector<std::string> with = {"--gpg-sign=" + fingerprint,
                                           "--gpg-homedir=" + home.path()};
    const auto flatpak = [&](std::vector<std::string> args) {
      args.insert(args.begin() + 1, with.begin(), with.end());
      args.insert(args.begin(), "flatpak");
      (void)run_checked(args);
    };
    flatpak({"build-sign", "--runtime", repo, "org.osuptest.Platform", "1"});
    flatpak({"build-sign", repo, kApp, "stable"});
    flatpak({"build-sign", repo, "org.osuptest.Other", "stable"});
    flatpak({"build-update-repo", repo});
  }
};

}  // namespace

TEST_CASE("osup apply installs Flatpak apps pinned to a commit, then updates them",
          "[integration]") {
  if (!find_tool("flatpak")) {
    WARN("flatpak is not installed: skipped (apt-get install flatpak)");
    return;
  }
  FlatpakSandbox box;
  REQUIRE(box.v1 != box.v2);
  const std::string perms = R"({ "filesystems": ["home:ro", "!host"], "shares": ["!network"] })";

  std::ofstream(box.dir / "update.conf") << "timer = on\n";
  const RunResult dry = box.apply(box.file(box.v1, perms), {"--dry-run", "--json"});
  INFO(dry.err);
  REQUIRE(dry.exit_code == 0);
  CHECK(nlohmann::json::parse(dry.out)["changes"] == 3);
  CHECK(box.flatpak({"list", "--system", "--app"}).empty());

  const RunResult first = box.apply(box.file(box.v1, perms));
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.out, Contains("+ remote test") && Contains("+ os update.conf") &&
                            Contains("applied 3 change(s)"));
  CHECK(test::run_cmd({"cat", box.dir / "update.conf"}).out ==
        "timer = on\nchannel = https://updates.example.com/stable/\n");
  CHECK(box.commit() == box.v1);  // the older commit, although v2 is the newest
  CHECK(box.flatpak({"run", kApp}) == "hello v1\n");
  const std::string shown = box.flatpak({"override", "--system", "--show", kApp});
  CHECK_THAT(shown, Contains("home:ro") && Contains("!host") && Contains("shared=!network"));

  const RunResult again = box.apply(box.file(box.v1, perms));
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Contains("nothing to do"));

  // The pin moves to v2 and a permission goes: an update, in place.
  const std::string perms2 = R"({ "filesystems": ["home:ro"] })";
  const RunResult moved = box.apply(box.file(box.v2, perms2));
  INFO(moved.err);
  REQUIRE(moved.exit_code == 0);
  CHECK_THAT(moved.out, Contains("~ flatpak org.osuptest.Hello") && Contains("applied 1 change"));
  CHECK(box.commit() == box.v2);
  CHECK(box.flatpak({"run", kApp}) == "hello v2\n");
  CHECK_THAT(box.flatpak({"override", "--system", "--show", kApp}),
             !Contains("network") && Contains("home:ro"));

  // osup export describes this: applying what it wrote changes nothing.
  const RunResult exported = box.export_json();
  INFO(exported.err);
  REQUIRE(exported.exit_code == 0);
  const nlohmann::json machine = nlohmann::json::parse(exported.out)["machine"];
  CHECK(machine["apps"]["flatpaks"][kApp]["commit"] == box.v2);
  CHECK(machine["apps"]["remotes"]["test"]["gpg_verify"] == false);
  CHECK(machine["os"]["channel"] == "https://updates.example.com/stable/");
  const RunResult round = box.apply(machine.dump(), {"--dry-run"});
  CHECK(round.exit_code == 0);
  CHECK_THAT(round.out, Contains("nothing to do"));

  // An app the remote lacks and an unreachable remote: one line each, nothing changed.
  const RunResult unknown =
      box.apply(box.file(box.v1, perms2, R"(, "org.osuptest.Nope": { "remote": "test" })"));
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.err, Contains("flatpak app 'org.osuptest.Nope': remote 'test' has no "
                                   "app/org.osuptest.Nope/"));
  CHECK(box.commit() == box.v2);  // the pin change in the same file did not run either
  const RunResult unreachable =
      box.apply(box.file(box.v2, perms2, R"(, "org.osuptest.Other": { "remote": "far" })",
                         R"(, "far": { "url": "http://127.0.0.1:9/repo/", "gpg_verify": false })"));
  CHECK(unreachable.exit_code == 1);
  CHECK_THAT(unreachable.err, Contains("flatpak remote 'far' (http://127.0.0.1:9/repo/) cannot "
                                       "be read"));
  CHECK_THAT(box.flatpak({"remotes", "--system"}), !Contains("far"));

  // The file drops everything: the app, its runtime and the remote go.
  const RunResult none = box.apply(R"({ "format": 1 })");
  INFO(none.err);
  REQUIRE(none.exit_code == 0);
  CHECK_THAT(none.out, Contains("- flatpak org.osuptest.Hello") && Contains("- remote test"));
  CHECK(box.flatpak({"list", "--system", "--columns=ref"}).empty());
  CHECK_THAT(box.flatpak({"remotes", "--system"}), !Contains("test"));

  // An app and a remote the user added by hand stay when osup removes its own.
  (void)box.flatpak(
      {"remote-add", "--system", "--no-gpg-verify", "mine", "file://" + box.repo.string()});
  (void)box.flatpak(
      {"install", "--system", "-y", "--noninteractive", "mine", "org.osuptest.Other//stable"});
  REQUIRE(box.apply(box.file(box.v1, perms)).exit_code == 0);
  const RunResult again_none = box.apply(R"({ "format": 1 })");
  INFO(again_none.err);
  REQUIRE(again_none.exit_code == 0);
  const std::string left = box.flatpak({"list", "--system", "--columns=application"});
  CHECK(left == "org.osuptest.Other\norg.osuptest.Platform\n");
  CHECK_THAT(box.flatpak({"remotes", "--system"}), Contains("mine") && !Contains("test"));
}

TEST_CASE("a full data partition stops osup apply with one line, the next apply finishes",
          "[integration]") {
  if (!find_tool("flatpak")) {
    WARN("flatpak is not installed: skipped (apt-get install flatpak)");
    return;
  }
  FlatpakSandbox box;
  // The installation on a 1 MiB tmpfs: flatpak finds the busybox runtime does not fit.
  fs::create_directories(box.system);
  if (test::run_cmd({"mount", "-t", "tmpfs", "-o", "size=1m", "osup-test-full", box.system})
          .exit_code != 0) {
    WARN("cannot mount a tmpfs here: skipped");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { (void)run({"umount", "-l", path}); }
  } unmount{box.system};
  const std::string perms = R"({ "filesystems": ["home:ro"] })";
  const RunResult full = box.apply(box.file(box.v1, perms));
  CHECK(full.exit_code == 1);
  // One line after the progress lines: which storage is full and what to do.
  CHECK_THAT(last_line(full.err),
             Contains("flatpak install ran out of disk space") && Contains("run osup apply again"));
  CHECK(std::count(full.err.begin(), full.err.end(), '\n') == 4);
  // The record names the app (it was being installed), so the next apply finishes it.
  CHECK_THAT(test::run_cmd({"cat", box.dir / "state.json"}).out, Contains(kApp));

  // OSTree keeps 500 MB free by default (min-free-space-size): tmpfs allocates lazily.
  REQUIRE(test::run_cmd({"mount", "-o", "remount,size=1g", box.system}).exit_code == 0);
  const RunResult next = box.apply(box.file(box.v1, perms));
  INFO(next.err);
  REQUIRE(next.exit_code == 0);
  CHECK_THAT(next.out, Contains("+ flatpak org.osuptest.Hello"));
  CHECK(box.commit() == box.v1);
  CHECK_THAT(box.apply(box.file(box.v1, perms)).out, Contains("nothing to do"));
}

TEST_CASE("a Flatpak remote signed with GPG: the file's key is checked by the real flatpak",
          "[integration]") {
  if (!find_tool("flatpak") || !find_tool("gpg")) {
    WARN("flatpak or gpg is not installed: skipped (apt-get install flatpak gnupg)");
    return;
  }
  FlatpakSandbox box;
  const GpgKey signer("signer"), other("other");
  signer.sign(box.repo);
  const std::string perms = R"({ "filesystems": ["home:ro"] })";
  // The newest commit (v2) is the signed one; the remote carries the key, not gpg_verify.
  const auto file = [&](const std::string& key) {
    std::string text = box.file(box.v2, perms);
    const std::string off = R"("gpg_verify": false)";
    return text.replace(text.find(off), off.size(), R"("gpg_key": ")" + key + R"(")");
  };

  // Another key than the repository's: refused before anything is installed.
  const RunResult wrong = box.apply(file(other.key));
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.err, Contains("flatpak remote 'test'") && Contains("public key not found") &&
                            Contains("check its gpg_key in the file"));
  CHECK(box.flatpak({"list", "--system"}).empty());

  const RunResult good = box.apply(file(signer.key));
  INFO(good.err);
  REQUIRE(good.exit_code == 0);
  CHECK(box.commit() == box.v2);
  CHECK(box.flatpak({"run", kApp}) == "hello v2\n");
  const std::string config = test::run_cmd({"cat", box.system / "repo/config"}).out;
  CHECK_THAT(config, Contains("gpg-verify=true") && !Contains("gpg-verify=false"));
  CHECK_THAT(box.apply(file(signer.key)).out, Contains("nothing to do"));
}
