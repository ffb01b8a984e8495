// The HTTP layer against a real nginx (and real TLS): small documents, the errors users
// see, and a URL read as a ByteSource, also through cut connections.
#include "updater/http.h"

#include <catch2/catch.hpp>
#include <vector>

#include "base/error.h"
#include "base/size.h"
#include "updater/bundle_source.h"
#include "updater/tests/http_fixture.h"

using namespace osup;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// The error message of fn(), which must throw osup::Error; one line.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    std::string m = e.what();
    INFO(m);
    CHECK(m.find('\n') == std::string::npos);
    return m;
  }
  FAIL("no error");
  return "";
}

std::string read_all(ByteSource& s, size_t chunk = 65536) {
  std::string out;
  std::vector<std::byte> buf(chunk);
  for (;;) {
    const size_t n = s.read(buf);
    out.append(reinterpret_cast<const char*>(buf.data()), n);
    if (n < buf.size()) return out;
  }
}

}  // namespace

TEST_CASE("is_url: http and https only", "[http]") {
  CHECK(is_url("http://example.org/x.osup"));
  CHECK(is_url("HTTPS://example.org/x.osup"));
  CHECK_FALSE(is_url("http://"));
  CHECK_FALSE(is_url("ftp://example.org/x"));
  CHECK_FALSE(is_url("/tmp/http://x"));
  CHECK_FALSE(is_url("-"));
}

TEST_CASE("http_get returns a small document, refuses one over the limit", "[http]") {
  test::HttpRig rig;
  const std::string body = rig.add("index.json", 5000);
  test::NginxServer nginx(rig.www);
  CHECK(http_get(nginx.url("/index.json"), 5000, test::fast_http()) == body);

  const std::string m =
      error_of([&] { (void)http_get(nginx.url("/index.json"), 4999, test::fast_http()); });
  CHECK(m ==
        "fetching " + nginx.url("/index.json") + ": larger than 4.9 KiB; is it the right file?");
  CHECK(nginx.wait_for_log("/index.json", 2).size() == 2);  // one each, no retry
}

TEST_CASE("http_get: 404 fails at once with one line", "[http]") {
  test::HttpRig rig;
  test::NginxServer nginx(rig.www);
  const std::string url = nginx.url("/channel/index.json");
  const std::string m = error_of([&] { (void)http_get(url, 1000, test::fast_http()); });
  CHECK(m == "fetching " + url + ": HTTP 404 (not found); is the URL right?");
  CHECK(nginx.wait_for_log("/channel/index.json", 1).size() == 1);
}

TEST_CASE("http_get: 500 is retried max_attempts times, then fails", "[http]") {
  test::HttpRig rig;
  test::NginxServer nginx(rig.www, {.locations = {{"= /broken", "return 500;"}}});
  const std::string m =
      error_of([&] { (void)http_get(nginx.url("/broken"), 1000, test::fast_http(3)); });
  CHECK(m == "fetching " + nginx.url("/broken") +
                 ": HTTP 500 (internal server error) (gave up after 3 attempts)");
  const auto log = nginx.wait_for_log("/broken", 3);
  CHECK(log.size() == 3);
  for (const auto& e : log) CHECK(e.status == 500);
}

TEST_CASE("http_get: connection refused names the URL", "[http]") {
  const std::string url = "http://127.0.0.1:" + std::to_string(test::closed_port()) + "/i.json";
  const std::string m = error_of([&] { (void)http_get(url, 1000, test::fast_http(2)); });
  CHECK(m == "connecting to " + url + ": connection refused (gave up after 2 attempts)");
}

TEST_CASE("https: trusted with --ca, refused with another CA or the system's", "[http]") {
  test::HttpRig rig;
  const std::string body = rig.add("index.json", 3000);
  test::NginxServer nginx(rig.www, {.tls = true});
  HttpOptions o = test::fast_http();
  o.ca_file = nginx.ca_file();
  CHECK(http_get(nginx.url("/index.json"), 1 << 20, o) == body);
  CHECK(http_get(nginx.url("/index.json", "localhost"), 1 << 20, o) == body);

  const std::string url = nginx.url("/index.json");
  o.ca_file = test::make_test_ca(rig.dir / "other-ca", "another-ca");
  std::string m = error_of([&] { (void)http_get(url, 1 << 20, o); });
  CHECK_THAT(m, StartsWith("fetching " + url + ": TLS certificate not trusted ("));
  CHECK_THAT(m, Contains("); is " + o.ca_file + " the channel's CA?"));

  o.ca_file = "";  // the system's CAs do not know the test CA
  m = error_of([&] { (void)http_get(url, 1 << 20, o); });
  CHECK_THAT(m, StartsWith("fetching " + url + ": TLS certificate not trusted ("));
  CHECK_THAT(m, Contains("); pass --ca FILE with the channel's CA"));
  CHECK(nginx.wait_for_log("/index.json", 2).size() == 2);  // refused ones never reach HTTP
}

TEST_CASE("open_http_source reads a URL as a stream", "[http]") {
  test::HttpRig rig;
  const std::string data = rig.add("x.osup", 3 * MiB + 17);
  test::NginxServer nginx(rig.www);
  auto src = open_bundle_source(nginx.url("/x.osup"), test::fast_http());
  CHECK(src->name() == nginx.url("/x.osup"));
  CHECK_FALSE(src->random_access());
  CHECK(read_all(*src, 100000) == data);
  CHECK(src->position() == data.size());

  auto missing = open_http_source(nginx.url("/nope.osup"), test::fast_http());
  CHECK(error_of([&] { (void)read_all(*missing); }) ==
        "fetching " + nginx.url("/nope.osup") + ": HTTP 404 (not found); is the URL right?");
}

TEST_CASE("open_http_source continues through cut connections with Range", "[http]") {
  test::HttpRig rig;
  const std::string data = rig.add("x.osup", 3 * MiB + 17);
  test::NginxServer nginx(rig.www);
  const uint64_t cut1 = MiB + 5, cut2 = 300 * KiB + 1;
  test::CutProxy proxy(nginx.port(), {cut1, cut2});
  auto src = open_http_source(proxy.url("/x.osup"), test::fast_http());
  CHECK(read_all(*src, 65536) == data);
  CHECK(proxy.body_bytes() == std::vector<uint64_t>{cut1, cut2, data.size() - cut1 - cut2});
  const auto log = nginx.wait_for_log("/x.osup", 3);
  REQUIRE(log.size() == 3);
  CHECK(log[0].range.empty());
  CHECK(log[1].range == "bytes=" + std::to_string(cut1) + "-");
  CHECK(log[1].status == 206);
  CHECK(log[2].range == "bytes=" + std::to_string(cut1 + cut2) + "-");
  CHECK(log[2].body_bytes == data.size() - cut1 - cut2);
}

TEST_CASE("open_http_source: a cut on a server without ranges fails with one line", "[http]") {
  test::HttpRig rig;
  const std::string data = rig.add("x.osup", 2 * MiB);
  test::NginxServer nginx(rig.www, {.ranges = false});
  test::CutProxy proxy(nginx.port(), {MiB});
  auto src = open_http_source(proxy.url("/x.osup"), test::fast_http());
  const std::string m = error_of([&] { (void)read_all(*src); });
  CHECK(m == "reading " + proxy.url("/x.osup") +
                 ": the connection was cut at byte 1048576 and the server cannot continue from "
                 "there (no range requests, or the file changed); download it to a file first");

  // Without a cut the same server streams the whole file.
  auto whole = open_http_source(nginx.url("/x.osup"), test::fast_http());
  CHECK(read_all(*whole) == data);
}

TEST_CASE("open_http_source: closing it early stops the transfer", "[http]") {
  test::HttpRig rig;
  rig.add("x.osup", 32 * MiB);
  test::NginxServer nginx(rig.www);
  auto src = open_http_source(nginx.url("/x.osup"), test::fast_http());
  std::vector<std::byte> buf(1000);
  CHECK(src->read(buf) == buf.size());
  src.reset();  // joins the producer, which is blocked on a full buffer
  const auto log = nginx.wait_for_log("/x.osup", 1);
  REQUIRE(log.size() == 1);
  CHECK(log[0].body_bytes < 32 * MiB);
}
