// Progress: JSON lines, and bytes resumed from an earlier run counted as done but not
// in the rate.
#include "base/progress.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace osup;

namespace {

std::string json_lines(uint64_t total, uint64_t resumed, uint64_t done) {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  {
    Progress p("download", total, ProgressMode::json, f);
    if (resumed) p.resume_from(resumed);
    p.set(done);
  }
  std::fclose(f);
  std::string out(text, size);
  std::free(text);
  return out;
}

}  // namespace

TEST_CASE("progress: resumed bytes count as done, not in the rate", "[progress]") {
  const std::string out = json_lines(2000, 1500, 1500);
  INFO(out);
  CHECK(out.find("\"done\":1500,\"total\":2000,\"percent\":75.0,\"bytes_per_second\":0,") !=
        std::string::npos);
  CHECK(out.find("\"final\":true") != std::string::npos);
}

TEST_CASE("progress: without a resume every byte is in the rate", "[progress]") {
  const std::string out = json_lines(2000, 0, 1500);
  INFO(out);
  CHECK(out.find("\"done\":1500,\"total\":2000,\"percent\":75.0,") != std::string::npos);
  CHECK(out.find("\"bytes_per_second\":0,") == std::string::npos);
}
