#include "updater/machine/machine_config.h"

#include <catch2/catch.hpp>

#include "base/error.h"

using namespace osup::machine;
using Catch::Matchers::Contains;

namespace {

const char* const kFull = R"({
  "format": 1,
  "os": { "channel": "https://updates.example/stable/" },
  "apps": {
    "remotes": { "local": { "url": "file:///srv/repo", "gpg_verify": false } },
    "flatpaks": { "org.example.Hello": { "remote": "local",
      "commit": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "permissions": { "filesystems": ["home:ro", "!host"], "devices": ["dri"],
                       "sockets": ["wayland"], "shares": ["!network"] } } }
  },
  "containers": {
    "web": { "image": "localhost/web:1", "command": ["httpd", "-f"],
             "mounts": [ { "host": "/var/lib/web", "container": "/www", "read_only": true } ],
             "ports": [ { "host": 8080, "container": 80 } ],
             "env": { "TZ": "UTC" } },
    "db": { "image": "localhost/db:1",
            "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "autostart": false }
  },
  "data": { "repository": "/mnt/backup", "password_env": "RESTIC_PASSWORD",
            "paths": ["/var/home"] }
})";

// Parses kFull with one substring replaced, for the error cases.
MachineConfig with(const std::string& from, const std::string& to) {
  std::string text = kFull;
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return parse_machine_config(text, "m.json");
}

}  // namespace

TEST_CASE("machine file: every section parses into its types", "[unit]") {
  const MachineConfig c = parse_machine_config(kFull, "m.json");
  REQUIRE(c.os);
  CHECK(c.os->channel == "https://updates.example/stable/");
  CHECK_FALSE(c.remotes.at("local").gpg_verify);
  const FlatpakApp& app = c.flatpaks.at("org.example.Hello");
  CHECK(app.branch == "stable");
  CHECK(app.commit->size() == 64);
  CHECK(app.permissions.filesystems == std::vector<std::string>{"home:ro", "!host"});
  CHECK(app.permissions.shares == std::vector<std::string>{"!network"});
  const Container& web = c.containers.at("web");
  CHECK(web.command == std::vector<std::string>{"httpd", "-f"});
  REQUIRE(web.mounts.size() == 1);
  CHECK(web.mounts[0].read_only);
  CHECK(web.ports[0].host == 8080);
  CHECK(web.ports[0].protocol == "tcp");
  CHECK(web.env.at("TZ") == "UTC");
  CHECK(web.autostart);
  CHECK_FALSE(c.containers.at("db").autostart);
  CHECK(c.containers.at("db").digest->starts_with("sha256:"));
  REQUIRE(c.data);
  CHECK(c.data->password_env == "RESTIC_PASSWORD");
  CHECK(c.data->paths == std::vector<std::string>{"/var/home"});
  CHECK(parse_machine_config(R"({"format": 1})", "x").containers.empty());
}

TEST_CASE("machine file: unknown fields are refused by their full path", "[unit]") {
  CHECK_THROWS_WITH(with("\"format\": 1,", "\"format\": 1, \"contianers\": {},"),
                    Contains("m.json: unknown field 'contianers'"));
  CHECK_THROWS_WITH(with("\"read_only\": true", "\"readonly\": true"),
                    Contains("unknown field 'containers.web.mounts[0].readonly'"));
  CHECK_THROWS_WITH(with("\"devices\"", "\"device\""),
                    Contains("unknown field 'apps.flatpaks.org.example.Hello.permissions.device'"));
  CHECK_THROWS_WITH(with("\"paths\"", "\"path\""), Contains("unknown field 'data.path'"));
}

TEST_CASE("machine file: bad values name the field and the rule", "[unit]") {
  CHECK_THROWS_WITH(parse_machine_config("{", "m.json"), Contains("m.json: not valid JSON"));
  CHECK_THROWS_WITH(parse_machine_config("{}", "m.json"), Contains("field 'format' is missing"));
  CHECK_THROWS_WITH(parse_machine_config(R"({"format": 2})", "m.json"),
                    Contains("newer than this osup understands"));
  CHECK_THROWS_WITH(with("\"/var/lib/web\"", "\"var/lib/web\""),
                    Contains("field 'containers.web.mounts[0].host' must be an absolute path"));
  CHECK_THROWS_WITH(with("\"host\": 8080", "\"host\": 70000"),
                    Contains("'containers.web.ports[0].host' must be a port number"));
  CHECK_THROWS_WITH(with("\"web\":", "\"Web\":"), Contains("'containers.Web' is not a valid name"));
  CHECK_THROWS_WITH(with("\"localhost/web:1\"", "\"localhost/web@sha256:00\""),
                    Contains("'containers.web.image' must be an image reference"));
  CHECK_THROWS_WITH(with("sha256:0123", "md5:0123"),
                    Contains("'containers.db.digest' must be sha256:"));
  CHECK_THROWS_WITH(with("\"TZ\"", "\"1TZ\""), Contains("'containers.web.env.1TZ' is not a valid"));
  CHECK_THROWS_WITH(with("\"autostart\": false", "\"autostart\": \"no\""),
                    Contains("'containers.db.autostart' must be true or false"));
  CHECK_THROWS_WITH(with("\"remote\": \"local\"", "\"remote\": \"flathub\""),
                    Contains("'apps.flatpaks.org.example.Hello.remote' names 'flathub', which "
                             "apps.remotes does not list"));
  CHECK_THROWS_WITH(with("\"dri\"", "\"gpu\""),
                    Contains("permissions.devices' has unknown entry 'gpu'"));
  CHECK_THROWS_WITH(with("\"gpg_verify\": false", "\"gpg_verify\": true"),
                    Contains("'apps.remotes.local' needs gpg_key"));
  CHECK_THROWS_WITH(with("\"https://updates.example/stable/\"", "\"ftp://x/\""),
                    Contains("'os.channel' must be an http:// or https:// URL"));
  CHECK_THROWS_WITH(
      with("\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",", "\"abc\","),
      Contains("'apps.flatpaks.org.example.Hello.commit' must be a 64-character"));
}

TEST_CASE("machine file: a backup password never goes in the file", "[unit]") {
  CHECK_THROWS_WITH(with("\"password_env\": \"RESTIC_PASSWORD\"", "\"password\": \"hunter2\""),
                    Contains("'data.password' is not allowed: a password never goes in the "
                             "machine file; use password_file or password_env"));
  CHECK_THROWS_WITH(with("\"password_env\": \"RESTIC_PASSWORD\"",
                         "\"password_env\": \"X\", \"password_file\": \"/p\""),
                    Contains("'data' needs exactly one of password_file and password_env"));
  CHECK_THROWS_WITH(with("\"/mnt/backup\"", "\"backup\""),
                    Contains("'data.repository' must be an absolute path or an sftp:"));
}
