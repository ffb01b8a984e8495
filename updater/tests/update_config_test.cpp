#include "updater/update_config.h"

#include <catch2/catch.hpp>

#include "base/error.h"

using namespace osup;
using Catch::Matchers::Contains;

TEST_CASE("update.conf: keys, comments, and one-line errors naming the line", "[unit]") {
  const UpdateConfig c = parse_update_config(
      "# osup\n\nchannel = https://u.example/stable/  # the channel\nca=/etc/ca.pem\ntimer = on\n",
      "update.conf");
  CHECK(c.channel == "https://u.example/stable/");
  CHECK(c.ca == "/etc/ca.pem");
  CHECK(c.timer);
  CHECK_FALSE(parse_update_config("", "x").timer);
  CHECK_THROWS_WITH(parse_update_config("\nchanel = http://x/\n", "u.conf"),
                    Contains("u.conf line 2: unknown key 'chanel'"));
  CHECK_THROWS_WITH(parse_update_config("channel = ftp://x/\n", "u.conf"),
                    Contains("http:// or https://"));
  CHECK_THROWS_WITH(parse_update_config("timer = yes\n", "u.conf"), Contains("on or off"));
  CHECK_THROWS_WITH(parse_update_config("channel\n", "u.conf"), Contains("expected 'key = value'"));
  CHECK_THROWS_WITH(parse_update_config("ca =\n", "u.conf"), Contains("has no value"));
}
