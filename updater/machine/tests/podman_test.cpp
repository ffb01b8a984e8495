// osup apply with the real podman: two containers on one network reaching each other by
// name, a bind mount, autostart units, a changed mount list recreating one container, and
// removal of only what osup installed. Skipped, saying so, where podman is not installed.
#include <sys/resource.h>
#include <unistd.h>

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

// Podman with its own storage, network definitions and settings, so the test never sees or
// touches the host's containers. The settings are this CI host's needs (docs/machine.md):
// runc (crun refuses the hybrid cgroup layout), ulimits no higher than ours (no
// CAP_SYS_RESOURCE), events in a file (no journald).
struct PodmanSandbox {
  test::TempDir dir;
  std::string image = "localhost/osup-test-busybox:1";

  PodmanSandbox() {
    rlimit files{}, procs{};
    getrlimit(RLIMIT_NOFILE, &files);
    getrlimit(RLIMIT_NPROC, &procs);
    // Small and below ours: runc's setrlimit fails even for our own current values here.
    const auto lim = [](const rlimit& r, rlim_t cap) {
      const std::string v = std::to_string(std::min(r.rlim_cur, cap));
      return v + ":" + v;
    };
    std::ofstream(dir / "containers.conf")
        << "[containers]\ndefault_ulimits = [\"nofile=" << lim(files, 1024)
        << "\", \"nproc=" << lim(procs, 4096)
        << "\"]\nlog_driver = \"k8s-file\"\n[engine]\nevents_logger = \"file\"\n"
        << (find_tool("runc") ? "runtime = \"runc\"\n" : "") << "[network]\nnetwork_config_dir = \""
        << dir.path() << "/networks\"\n";
    std::ofstream(dir / "storage.conf")
        << "[storage]\ndriver = \"overlay\"\ngraphroot = \"" << dir.path()
        << "/storage\"\nrunroot = \"" << dir.path() << "/run\"\n";
    setenv("CONTAINERS_CONF", (dir / "containers.conf").c_str(), 1);
    setenv("CONTAINERS_STORAGE_CONF", (dir / "storage.conf").c_str(), 1);
    // A tiny image without a registry: busybox-static imported from a tar of its tree.
    test::make_busybox_rootfs(host_arch(), dir / "rootfs");
    run_checked({"tar", "-C", dir / "rootfs", "-cf", dir / "rootfs.tar", "."});
    run_checked({"podman", "import", "--change", "CMD=[\"/bin/sh\"]", dir / "rootfs.tar", image});
  }
  ~PodmanSandbox() {
    (void)run({"podman", "rm", "--all", "--force", "--time", "0"});
    (void)run({"podman", "network", "rm", "--force", "osup"});
    (void)run({"podman", "rmi", "--all", "--force"});
    unsetenv("CONTAINERS_CONF");
    unsetenv("CONTAINERS_STORAGE_CONF");
  }
  [[nodiscard]] std::string podman(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"podman"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_checked(argv).out;
  }
  // What client fetches from http://web/; retried for a few seconds, since aardvark-dns
  // learns a recreated container's address a moment after podman start returns.
  [[nodiscard]] std::string fetch_web() const {
    RunResult r;
    for (int i = 0; i < 20; ++i) {
      r = run({"podman", "exec", "client", "/bin/busybox", "wget", "-q", "-O", "-", "http://web/"});
      if (r.exit_code == 0) break;
      usleep(500000);
    }
    return r.out;
  }
  [[nodiscard]] std::string id(const std::string& name) const {
    return podman({"inspect", "--format", "{{.Id}}", name});
  }
};

struct Machine {
  const PodmanSandbox& box;
  std::string file = box.dir / "machine.json", state = box.dir / "state/machine-state.json",
              units = box.dir / "units";

  RunResult apply(const std::string& json_text, const std::vector<std::string>& extra = {}) {
    std::ofstream(file) << json_text;
    std::vector<std::string> argv = {test::osup_exe(), "apply", file, "--state", state,
                                     "--unit-dir",     units};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_cmd(argv);
  }
};

std::string machine_file(const std::string& image, const std::string& www,
                         const std::string& extra_web_mount, bool with_client) {
  std::string web = R"("web": { "image": ")" + image +
                    R"(", "command": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
      "mounts": [ { "host": ")" +
                    www + R"(", "container": "/www", "read_only": true } )" + extra_web_mount +
                    "] }";
  std::string client = R"(, "client": { "image": ")" + image +
                       R"(", "command": ["/bin/busybox", "sleep", "3600"] })";
  return R"({ "format": 1, "containers": { )" + web + (with_client ? client : "") + " } }";
}

}  // namespace

TEST_CASE("osup apply runs podman containers that reach each other by name", "[integration]") {
  if (!find_tool("podman")) {
    WARN("podman is not installed: skipped (apt-get install podman runc)");
    return;
  }
  PodmanSandbox box;
  Machine m{box};
  const std::string www = box.dir / "www";
  fs::create_directories(www);
  std::ofstream(www + "/index.html") << "hello from web\n";
  const std::string v1 = machine_file(box.image, www, "", true);

  const RunResult dry = m.apply(v1, {"--dry-run", "--json"});
  REQUIRE(dry.exit_code == 0);
  CHECK(nlohmann::json::parse(dry.out)["changes"] == 3);
  CHECK(box.podman({"ps", "--all", "--quiet"}).empty());

  const RunResult first = m.apply(v1);
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.out, Contains("applied 3 change(s)"));
  CHECK(box.fetch_web() == "hello from web\n");
  const std::string unit = m.units + "/osup-container-web.service";
  CHECK_THAT(test::run_cmd({"cat", unit}).out, Contains("start --attach web"));
  CHECK(fs::is_symlink(m.units + "/multi-user.target.wants/osup-container-client.service"));
  const std::string client_id = box.id("client"), web_id = box.id("web");

  const RunResult again = m.apply(v1);
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Contains("nothing to do"));

  // osup export (seeing only podman) describes both containers; applying that changes nothing.
  const std::string tools = box.dir / "tools";
  fs::create_directories(tools);
  fs::create_symlink(*find_tool("podman"), tools + "/podman");
  RunOptions only_podman;
  only_podman.env = {{"OSUP_TOOL_PATH", tools}};
  const RunResult exported =
      test::run_cmd({test::osup_exe(), "export", "--output", box.dir / "exported.json", "--file",
                     m.file, "--update-conf", box.dir / "none.conf"},
                    only_podman);
  INFO(exported.err);
  REQUIRE(exported.exit_code == 0);
  CHECK_THAT(exported.err, Contains("2 container(s)"));
  const nlohmann::json ex =
      nlohmann::json::parse(test::run_cmd({"cat", box.dir / "exported.json"}).out);
  CHECK(ex["containers"]["web"]["mounts"][0]["host"] == www);
  CHECK(ex["containers"]["client"]["command"][1] == "sleep");
  const RunResult round = m.apply(ex.dump(), {"--dry-run"});
  CHECK_THAT(round.out, Contains("nothing to do"));

  // One more mount for web: web is recreated with it, client is left as it was.
  const std::string logs = box.dir / "logs";
  const RunResult changed = m.apply(machine_file(
      box.image, www, R"(, { "host": ")" + logs + R"(", "container": "/logs" })", true));
  INFO(changed.err);
  REQUIRE(changed.exit_code == 0);
  CHECK_THAT(changed.out, Contains("~ container web") && Contains("applied 1 change(s)"));
  CHECK(box.id("client") == client_id);
  CHECK(box.id("web") != web_id);
  CHECK(fs::is_directory(logs));
  CHECK(box.podman({"exec", "web", "/bin/busybox", "touch", "/logs/written"}).empty());
  CHECK(fs::exists(logs + "/written"));
  CHECK(box.fetch_web() == "hello from web\n");

  // A container the user made by hand: osup refuses its name and never removes it.
  (void)box.podman({"create", "--name", "handmade", box.image});
  const RunResult clash = m.apply(R"({ "format": 1, "containers": { "handmade": { "image": ")" +
                                  box.image + R"(" } } })");
  CHECK(clash.exit_code == 1);
  CHECK_THAT(clash.err, Contains("container 'handmade' exists but osup did not create it"));
  const RunResult none = m.apply(R"({ "format": 1 })");
  INFO(none.err);
  REQUIRE(none.exit_code == 0);
  CHECK_THAT(none.out, Contains("- container web") && Contains("- network osup"));
  CHECK(box.podman({"ps", "--all", "--format", "{{.Names}}"}) == "handmade\n");
  CHECK_FALSE(fs::exists(unit));
  CHECK_FALSE(fs::exists(m.units + "/multi-user.target.wants/osup-container-web.service"));
}
