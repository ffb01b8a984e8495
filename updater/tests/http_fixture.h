// Shared by the HTTP tests: a served directory with files of random bytes, and
// HttpOptions with short backoffs and timeouts so failures come back fast.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/fd.h"
#include "format/sha256.h"
#include "tests/support/nginx_server.h"
#include "tests/support/test_support.h"
#include "updater/http.h"

namespace osup::test {

struct HttpRig {
  TempDir dir;
  std::string www = dir / "www";
  HttpRig() {
    std::filesystem::create_directories(www);
    // Requests to the test servers never go through a proxy of the environment.
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
  }
  // Writes www/NAME with SIZE random bytes; returns them.
  std::string add(const std::string& name, uint64_t size, uint32_t seed = 1) const {
    write_random_file(www + "/" + name, size, seed);
    return read_text_file(www + "/" + name);
  }
};

inline HttpOptions fast_http(int attempts = 4) {
  HttpOptions o;
  o.max_attempts = attempts;
  o.first_backoff_s = 0.01;
  o.connect_timeout_s = 5;
  o.low_speed_time_s = 5;
  return o;
}

inline std::string sha256_hex(const std::string& data) { return to_hex(sha256(data)); }

}  // namespace osup::test
