// The real osup CLI reading bundles from a URL served by a real nginx: `info` and
// `switch` (through connections cut mid-bundle), and the one-line error of a wrong URL.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/support/nginx_server.h"
#include "tests/support/test_support.h"

using namespace osup;
namespace fs = std::filesystem;

TEST_CASE("switch and info read a bundle from an http URL, also through cut connections",
          "[integration]") {
  ::setenv("no_proxy", "127.0.0.1,localhost", 1);
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  const test::TestImage v2 =
      test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key, "tiny", {"--no-disk"}, "www");
  const std::string name = "/" + fs::path(v2.bundle).filename().string();
  const uint64_t size = fs::file_size(v2.bundle);
  test::NginxServer nginx(dir / "www");
  auto osup = [&](const std::vector<std::string>& args) {
    return test::run_offline_osup(v1.disk, key, "", args);
  };

  RunResult r = osup({"info", nginx.url(name), "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out)["version"] == "2.0.0");

  r = osup({"switch", nginx.url("/missing.osup")});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("fetching " + nginx.url("/missing.osup") +
                   ": HTTP 404 (not found); is the URL right?\n") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);

  const uint64_t cut1 = size / 3, cut2 = size / 4;
  test::CutProxy proxy(nginx.port(), {cut1, cut2});
  r = osup({"switch", proxy.url(name)});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = osup({"status", "--json"});
  CHECK(nlohmann::json::parse(r.out)["slots"]["b"]["version"] == "2.0.0");
  CHECK(proxy.body_bytes().size() == 3);
  const auto log = nginx.wait_for_log(name, 4);  // info's, then switch's three
  REQUIRE(log.size() == 4);
  CHECK(log[2].range == "bytes=" + std::to_string(cut1) + "-");
  CHECK(log[3].range == "bytes=" + std::to_string(cut1 + cut2) + "-");
}
