// download_to_file against a real nginx: cuts within a run continue with Range requests
// from the bytes on disk, a previous run's partial file is continued, a server without
// ranges starts over, and a file that does not match the signed index is deleted.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "updater/http.h"
#include "updater/tests/http_fixture.h"

using namespace osup;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kSize = 3 * MiB + 333;

struct Download {
  test::HttpRig rig;
  std::string data = rig.add("x.osup", kSize, 7);
  DownloadExpect expect{data.size(), test::sha256_hex(data)};
  std::string out = rig.dir / "x.osup.part";

  void leave_partial(uint64_t n) const {
    std::ofstream(out, std::ios::binary) << data.substr(0, n);
  }
};

// The JSON lines a Progress wrote (mode json) into a memory stream.
struct CapturedProgress {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  ~CapturedProgress() { std::free(text); }
  std::string lines() {
    std::fflush(f);
    return std::string(text, size);
  }
};

}  // namespace

TEST_CASE("download_to_file continues cut connections from the bytes on disk", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  const uint64_t cut1 = MiB + 123, cut2 = 700 * KiB + 7;
  test::CutProxy proxy(nginx.port(), {cut1, cut2});
  CapturedProgress captured;
  {
    Progress p("download", kSize, ProgressMode::json, captured.f);
    download_to_file(proxy.url("/x.osup"), d.out, d.expect, test::fast_http(), &p);
  }
  CHECK(read_text_file(d.out) == d.data);
  CHECK(proxy.body_bytes() == std::vector<uint64_t>{cut1, cut2, kSize - cut1 - cut2});

  const auto log = nginx.wait_for_log("/x.osup", 3);
  REQUIRE(log.size() == 3);
  CHECK(log[0].range.empty());
  CHECK(log[1].range == "bytes=" + std::to_string(cut1) + "-");  // what was on disk
  CHECK(log[2].range == "bytes=" + std::to_string(cut1 + cut2) + "-");
  CHECK(log[1].status == 206);
  CHECK(log[2].status == 206);
  // nginx sent the file once, plus what was in flight (socket buffers) at each cut.
  CHECK(log[2].body_bytes == kSize - cut1 - cut2);
  uint64_t sent = 0;
  for (const auto& e : log) sent += e.body_bytes;
  const uint64_t lost = (log[0].body_bytes - cut1) + (log[1].body_bytes - cut2);
  CHECK(log[0].body_bytes >= cut1);
  CHECK(log[1].body_bytes >= cut2);
  CHECK(sent == kSize + lost);
  CHECK_THAT(captured.lines(), Contains("\"done\":" + std::to_string(kSize) + ",\"total\":" +
                                        std::to_string(kSize) + ",\"percent\":100.0"));
}

TEST_CASE("download_to_file continues a previous run's partial file", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  const uint64_t partial = 2 * MiB + 5;
  d.leave_partial(partial);  // what a run killed at that point left behind
  download_to_file(nginx.url("/x.osup"), d.out, d.expect, test::fast_http(), nullptr);
  CHECK(read_text_file(d.out) == d.data);
  const auto log = nginx.wait_for_log("/x.osup", 1);
  REQUIRE(log.size() == 1);
  CHECK(log[0].range == "bytes=" + std::to_string(partial) + "-");
  CHECK(log[0].status == 206);
  CHECK(log[0].body_bytes == kSize - partial);

  // Complete already: checked, not fetched again.
  download_to_file(nginx.url("/x.osup"), d.out, d.expect, test::fast_http(), nullptr);
  CHECK(nginx.access_log("/x.osup").size() == 1);
}

TEST_CASE("download_to_file: progress counts resumed bytes as done", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  d.leave_partial(kSize - 1000);
  CapturedProgress captured;
  {
    Progress p("download", kSize, ProgressMode::json, captured.f);
    download_to_file(nginx.url("/x.osup"), d.out, d.expect, test::fast_http(), &p);
  }
  const std::string lines = captured.lines();
  INFO(lines);
  CHECK_THAT(lines, Contains("\"done\":" + std::to_string(kSize) + ","));
  CHECK(lines.find("\"done\":0,") == std::string::npos);
}

TEST_CASE("download_to_file: a server without ranges starts over and completes", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www, {.ranges = false});
  d.leave_partial(MiB);
  const uint64_t cut = 512 * KiB;
  test::CutProxy proxy(nginx.port(), {cut});
  download_to_file(proxy.url("/x.osup"), d.out, d.expect, test::fast_http(), nullptr);
  CHECK(read_text_file(d.out) == d.data);
  const auto log = nginx.wait_for_log("/x.osup", 2);
  REQUIRE(log.size() == 2);
  CHECK(log[0].range == "bytes=1048576-");  // ignored: the whole file came, cut at 512 KiB
  CHECK(log[0].status == 200);
  CHECK(log[1].range == "bytes=" + std::to_string(cut) + "-");  // ignored again
  CHECK(log[1].status == 200);
  CHECK(log[1].body_bytes == kSize);
}

TEST_CASE("download_to_file: a sha256 mismatch deletes the file", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  DownloadExpect wrong = d.expect;
  wrong.sha256 = test::sha256_hex("something else");
  const std::string url = nginx.url("/x.osup");
  try {
    download_to_file(url, d.out, wrong, test::fast_http(), nullptr);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "downloading " + url +
                                       ": the download does not match the signed index (sha256 " +
                                       d.expect.sha256 + ", expected " + wrong.sha256 +
                                       "); deleted " + d.out + ", try again");
  }
  CHECK_FALSE(fs::exists(d.out));
}

TEST_CASE("download_to_file: a file of another size than the index is refused", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  DownloadExpect small = d.expect;
  small.size = kSize - 1;
  const std::string url = nginx.url("/x.osup");
  CHECK_THROWS_WITH(download_to_file(url, d.out, small, test::fast_http(), nullptr),
                    "fetching " + url + ": the server's file has " + std::to_string(kSize) +
                        " bytes, the signed index says " + std::to_string(kSize - 1));
  CHECK(nginx.wait_for_log("/x.osup", 1).size() == 1);  // no retry

  // A partial file longer than the index's size is no prefix of it: started over.
  d.leave_partial(kSize);
  std::ofstream(d.out, std::ios::app) << "trailing garbage";
  download_to_file(url, d.out, d.expect, test::fast_http(), nullptr);
  CHECK(read_text_file(d.out) == d.data);
}

TEST_CASE("download_to_file over https with --ca, resuming", "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www, {.tls = true});
  HttpOptions o = test::fast_http();
  o.ca_file = nginx.ca_file();
  d.leave_partial(1000);
  download_to_file(nginx.url("/x.osup", "localhost"), d.out, d.expect, o, nullptr);
  CHECK(read_text_file(d.out) == d.data);
  const auto log = nginx.wait_for_log("/x.osup", 1);
  REQUIRE(log.size() == 1);
  CHECK(log[0].range == "bytes=1000-");
}

TEST_CASE("download_to_file: a failed run leaves its partial file, the next continues it",
          "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  const uint64_t cut = MiB + 77;
  {
    test::CutProxy proxy(nginx.port(), {cut});
    CHECK_THROWS_WITH(
        download_to_file(proxy.url("/x.osup"), d.out, d.expect, test::fast_http(1), nullptr),
        Contains("(gave up after 1 attempt)"));
  }
  CHECK(fs::file_size(d.out) == cut);
  download_to_file(nginx.url("/x.osup"), d.out, d.expect, test::fast_http(), nullptr);
  CHECK(read_text_file(d.out) == d.data);
  const auto log = nginx.wait_for_log("/x.osup", 2);
  REQUIRE(log.size() == 2);
  CHECK(log[1].range == "bytes=" + std::to_string(cut) + "-");
  CHECK(log[1].body_bytes == kSize - cut);
}

TEST_CASE("download_to_file: a stalled connection is dropped after low_speed_time, then continued",
          "[http]") {
  Download d;
  test::NginxServer nginx(d.rig.www);
  test::CutProxy proxy(nginx.port(), {MiB}, /*stall=*/true);
  HttpOptions o = test::fast_http();
  o.low_speed_time_s = 1;
  download_to_file(proxy.url("/x.osup"), d.out, d.expect, o, nullptr);
  CHECK(read_text_file(d.out) == d.data);
  const auto log = nginx.wait_for_log("/x.osup", 2);
  REQUIRE(log.size() == 2);
  CHECK(log[1].range == "bytes=" + std::to_string(MiB) + "-");
}
