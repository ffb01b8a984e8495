// `osup update` end to end: a channel made by the real `osup-build publish`, served by a
// real nginx, taken by the real osup working offline on a disk image made by osup-build.
// The delta path, resuming a download, falling back to the full bundle, and every refusal
// (which must leave the ESP exactly as it was).
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "boot/esp_access.h"
#include "format/channel.h"
#include "format/delta.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "format/signature.h"
#include "tests/support/nginx_server.h"
#include "tests/support/test_support.h"

using namespace osup;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// `keygen --secure-boot` into DIR, for images whose spec has secure_boot (signed UKIs).
std::string secure_boot_keys(const std::string& dir) {
  const RunResult r = run({test::osup_build_exe(), "keygen", "--secure-boot", "--out", dir});
  if (r.exit_code != 0) fail("keygen --secure-boot failed: " + r.err);
  return dir;
}

struct Channel {
  test::TempDir dir;
  test::TestKey key = test::make_key(dir / "key");
  std::string sb;  // Secure Boot keys: v1 and v2 boot signed UKIs
  test::TestImage v1 =
      test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key, "tiny", {}, "out", sb);
  test::TestImage v2 = test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key, "tiny",
                                              {"--no-disk"}, "v2", sb);
  std::string www = dir / "www";
  std::string state = dir / "state", cache = dir / "cache";
  mutable std::string publish_out;  // the last publish's stdout

  explicit Channel(bool ukis = false) : sb(ukis ? secure_boot_keys(dir / "sb") : "") {
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    publish(v1.bundle);
    publish(v2.bundle);
  }
  void publish(const std::string& bundle, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> argv = {
        test::osup_build_exe(), "publish", bundle, "--channel", www, "--key", key.private_key};
    argv.insert(argv.end(), extra.begin(), extra.end());
    RunResult r = run(argv);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    publish_out = r.out;
  }
  RunResult osup(const std::vector<std::string>& args) const {
    return test::run_offline_osup(v1.disk, key, "a", args);
  }
  RunResult update(const std::string& url, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"update",
                                     "--channel",
                                     url,
                                     "--state-dir",
                                     state,
                                     "--cache-dir",
                                     cache,
                                     "--machine-id",
                                     "0123456789abcdef0123456789abcdef",
                                     "--retries",
                                     "0",
                                     "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    return osup(args);
  }
  // Everything the loader and osup keep on the ESP.
  [[nodiscard]] std::map<std::string, std::string> esp_state() const {
    gpt::Table t = gpt::read(v1.disk);
    auto e = open_image_esp(v1.disk, t.find("esp")->start);
    std::map<std::string, std::string> out;
    for (std::string d : {"/loader", "/loader/entries", "/osup/a", "/osup/b"})
      for (const std::string& f : e->list(d))
        if (auto content = e->read(d + "/" + f)) out[d + "/" + f] = *content;
    return out;
  }
  [[nodiscard]] ChannelIndex index() const {
    return ChannelIndex::parse(read_text_file(www + "/index.json"));
  }
  void write_index(const ChannelIndex& idx, const std::string& signer = "") const {
    const std::string bytes = idx.to_json();
    const sig::PrivateKey k = sig::PrivateKey::load(signer.empty() ? key.private_key : signer);
    atomic_write_file(www + "/index.json", bytes);
    atomic_write_file(www + "/index.json.sig", k.sign(bytes));
  }
  // IDX as the channel's next index: serial raised, signed.
  void republish(ChannelIndex& idx) const {
    idx.serial += 1;
    write_index(idx);
  }
  // `osup update` from NGINX, which must succeed; its --json report.
  [[nodiscard]] json update_ok(const test::NginxServer& nginx) const {
    const RunResult r = update(nginx.url("/"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  }
};

void require_one_line_refusal(const RunResult& r, const std::string& words) {
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(words) != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

}  // namespace

TEST_CASE("osup update installs a delta from a channel served by nginx", "[integration]") {
  Channel c;
  test::NginxServer nginx(c.www);
  const ChannelIndex idx = c.index();
  REQUIRE(idx.releases.size() == 2);
  REQUIRE(idx.releases[1].deltas.size() == 1);
  const ChannelFile delta = idx.releases[1].deltas[0].file;
  const uint64_t full = idx.releases[1].bundle.size;
  CHECK(delta.size * 10 < full);

  RunResult r = c.update(nginx.url("/"), {"--check"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  json plan = json::parse(r.out);
  CHECK(plan["current"] == "1.0.0");
  CHECK(plan["available"] == "2.0.0");
  CHECK(plan["method"] == "delta");
  CHECK(plan["download_bytes"] == delta.size);
  CHECK(plan["installed"] == false);

  SECTION("a download cut by a power loss continues where it stopped") {
    // What a run killed mid-download leaves: the first part of the file in the cache.
    fs::create_directories(c.cache);
    const std::string partial = c.cache + "/" + delta.sha256 + ".osupd";
    const std::string bytes = read_text_file(c.www + "/" + delta.path);
    atomic_write_file(partial, bytes.substr(0, bytes.size() / 2));
    r = c.update(nginx.url("/"), {"--check"});
    CHECK(json::parse(r.out)["download_bytes"] == delta.size - bytes.size() / 2);
    r = c.update(nginx.url("/"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto log = nginx.access_log("/" + delta.path);
    REQUIRE(log.size() == 1);
    CHECK(log[0].range == "bytes=" + std::to_string(bytes.size() / 2) + "-");
    CHECK(log[0].body_bytes == delta.size - bytes.size() / 2);
  }
  SECTION("the whole update") {
    r = c.update(nginx.url("/"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(nginx.access_log("/" + delta.path).size() == 1);
  }
  const json out = json::parse(r.out);
  CHECK(out["installed"] == true);
  CHECK(out["method"] == "delta");
  CHECK(out["slot"] == "b");
  CHECK(nginx.access_log("/" + idx.releases[1].bundle.path).empty());  // never the bundle
  r = c.osup({"status", "--json"});
  CHECK(json::parse(r.out)["slots"]["b"]["version"] == "2.0.0");
  r = c.osup({"verify", "b"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(fs::is_empty(c.cache));  // an installed download is not kept
}

TEST_CASE("a delta that does not apply falls back to the full bundle", "[integration]") {
  Channel c;
  // Another build of 1.0.0 (other bytes), and a delta from it to 2.0.0, forged into the
  // index as if it were made from the disk's 1.0.0.
  const test::TestImage other = test::build_tiny_image(c.dir.path(), Arch::x86_64, "1.0.0", c.key,
                                                       "tiny", {"--no-disk"}, "other");
  const std::string wrong = c.www + "/deltas/wrong.osupd";
  RunResult r = run({test::osup_build_exe(), "delta", other.bundle, c.v2.bundle, "--key",
                     c.key.private_key, "--out", wrong});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  SECTION("osup switch refuses the delta before writing") {
    const auto before = c.esp_state();
    require_one_line_refusal(c.osup({"switch", wrong}), "use the full bundle");
    CHECK(c.esp_state() == before);
  }
  SECTION("osup update takes the full bundle instead") {
    ChannelIndex idx = c.index();
    ChannelFile& f = idx.releases[1].deltas[0].file;
    f.path = "deltas/wrong.osupd";
    f.size = fs::file_size(wrong);
    f.sha256 = to_hex(sha256_file(wrong));
    c.republish(idx);
    test::NginxServer nginx(c.www);
    const json out = c.update_ok(nginx);
    CHECK(out["installed"] == true);
    CHECK(out["method"] == "full");
    CHECK(out["delta_failed"].get<std::string>().find("made from") != std::string::npos);
    CHECK(nginx.access_log("/" + idx.releases[1].bundle.path).size() == 1);
    CHECK(c.osup({"verify", "b"}).exit_code == 0);
  }
}

TEST_CASE("a UKI release gets no delta and osup update installs its full bundle", "[integration]") {
  Channel c(true);
  ChannelIndex idx = c.index();
  REQUIRE(idx.releases.size() == 2);
  CHECK(idx.releases[1].deltas.empty());
  CHECK_FALSE(fs::exists(c.www + "/deltas"));
  CHECK_THAT(c.publish_out, Catch::Matchers::Contains("no delta: release 2.0.0 boots signed UKIs"));
  const std::string bundle = "/" + idx.releases[1].bundle.path;
  std::string delta_uri;
  SECTION("the channel offers the bundle") {
    test::NginxServer nginx(c.www);
    RunResult r = c.update(nginx.url("/"), {"--check"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(json::parse(r.out)["method"] == "full");
    CHECK(json::parse(r.out)["download_bytes"] == idx.releases[1].bundle.size);
    r = c.update(nginx.url("/"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(json::parse(r.out)["method"] == "full");
    CHECK(nginx.access_log(bundle).size() == 1);
    for (const test::AccessEntry& e : nginx.access_log())
      CHECK(e.uri.rfind("/deltas/", 0) == std::string::npos);
  }
  SECTION("a delta from an older publish: the device refuses it and takes the bundle") {
    const std::string made = c.www + "/deltas/old.osupd";
    fs::create_directories(c.www + "/deltas");
    RunResult r = run({test::osup_build_exe(), "delta", c.v1.bundle, c.v2.bundle, "--key",
                       c.key.private_key, "--out", made});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    idx.releases[1].deltas.push_back(
        {"1.0.0",
         idx.releases[0].root_hash,
         {"deltas/old.osupd", fs::file_size(made), to_hex(sha256_file(made))}});
    c.republish(idx);
    test::NginxServer nginx(c.www);
    const json out = c.update_ok(nginx);
    CHECK(out["method"] == "full");
    CHECK(out["delta_failed"].get<std::string>().find("signed UKIs") != std::string::npos);
    CHECK(nginx.access_log("/deltas/old.osupd").size() == 1);
    CHECK(nginx.access_log(bundle).size() == 1);
  }
  const RunResult st = c.osup({"status", "--json"});
  CHECK(json::parse(st.out)["slots"]["b"]["version"] == "2.0.0");
  CHECK(c.osup({"verify", "b"}).exit_code == 0);  // the installed UKI matches the manifest
}

TEST_CASE("damaged deltas are refused before anything is written", "[integration]") {
  Channel c;
  const std::string good = c.www + "/" + c.index().releases[1].deltas[0].file.path;
  const std::string bytes = read_text_file(good);
  const auto before = c.esp_state();
  const std::string bad = c.dir / "bad.osupd";
  SECTION("truncated") {
    for (size_t n : {size_t{5}, size_t{200}, bytes.size() / 2, bytes.size() - 1}) {
      atomic_write_file(bad, bytes.substr(0, n));
      RunResult r = c.osup({"switch", bad});
      INFO(n << ": " << r.err);
      CHECK(r.exit_code == 1);
      CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
  }
  SECTION("one flipped byte anywhere") {
    for (size_t at = 3; at < bytes.size(); at += bytes.size() / 23 + 1) {
      std::string b = bytes;
      b[at] = static_cast<char>(b[at] ^ 0x20);
      atomic_write_file(bad, b);
      RunResult r = c.osup({"switch", bad});
      INFO("byte " << at << ": " << r.err);
      CHECK(r.exit_code == 1);
      CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
  }
  CHECK(c.esp_state() == before);
  CHECK(c.osup({"switch", good}).exit_code == 0);  // the intact delta still installs
}

TEST_CASE("osup update refuses an untrusted, expired, replayed or unreachable channel",
          "[integration]") {
  Channel c;
  const auto before = c.esp_state();
  test::NginxServer nginx(c.www);
  const std::string url = nginx.url("/");

  SECTION("index signed by another key") {
    const test::TestKey other = test::make_key(c.dir / "other");
    c.write_index(c.index(), other.private_key);
    require_one_line_refusal(c.update(url), "is not signed by a trusted key");
  }
  SECTION("expired index (freeze attack)") {
    ChannelIndex idx = c.index();
    idx.expires = 1000;
    c.write_index(idx);
    require_one_line_refusal(c.update(url), "expired at 1970-01-01");
  }
  SECTION("an index older than one seen (rollback attack)") {
    ChannelIndex idx = c.index();
    REQUIRE(c.update(url, {"--check"}).exit_code == 0);  // sees serial 2
    idx.serial = 1;
    c.write_index(idx);
    require_one_line_refusal(c.update(url), "older than serial 2 seen before");
  }
  SECTION("404") { require_one_line_refusal(c.update(nginx.url("/nope/")), "HTTP 404"); }
  SECTION("connection refused") {
    require_one_line_refusal(
        c.update("http://127.0.0.1:" + std::to_string(test::closed_port()) + "/"),
        "connection refused");
  }
  SECTION("a TLS certificate from another CA") {
    test::NginxServer tls(c.www, {.tls = true});
    const std::string other_ca = test::make_test_ca(c.dir / "other-ca");
    require_one_line_refusal(c.update(tls.url("/"), {"--ca", other_ca}), "certificate");
    // The right CA works, over https.
    RunResult r = c.update(tls.url("/"), {"--ca", tls.ca_file(), "--check"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
  }
  CHECK(c.esp_state() == before);
}

TEST_CASE("publish keeps the serial growing and refuses a release twice", "[integration]") {
  Channel c;
  CHECK(c.index().serial == 2);
  const test::TestImage v3 = test::build_tiny_image(c.dir.path(), Arch::x86_64, "3.0.0", c.key,
                                                    "tiny", {"--no-disk"}, "v3");
  c.publish(v3.bundle, {"--deltas-from", "2", "--rollout", "50"});
  const ChannelIndex idx = c.index();
  CHECK(idx.serial == 3);
  REQUIRE(idx.releases.size() == 3);
  CHECK(idx.releases[2].rollout_percent == 50);
  CHECK(idx.releases[2].deltas.size() == 2);  // from 2.0.0 and from 1.0.0
  RunResult r = run({test::osup_build_exe(), "publish", v3.bundle, "--channel", c.www, "--key",
                     c.key.private_key});
  require_one_line_refusal(r, "already has tiny 3.0.0");
  const test::TestKey other = test::make_key(c.dir / "other");
  r = run({test::osup_build_exe(), "publish", v3.bundle, "--channel", c.www, "--key",
           other.private_key});
  require_one_line_refusal(r, "not signed by this key");
  CHECK(c.index().serial == 3);
}

TEST_CASE("a delta patches a packed initrd's content and the device packs it again",
          "[integration]") {
  test::TempDir dir;
  const test::TestKey key = test::make_key(dir / "key");
  const std::string root = dir / "rootfs-x86_64";
  test::make_busybox_rootfs(Arch::x86_64, root, true);
  std::string init;
  for (int i = 0; i < 40000; ++i)
    init += "line " + std::to_string(i * 7919 % 100003) + " of init\n";
  // dracut --no-compress output; osup-build packs it (format/initrd_pack.h).
  auto write_initrd = [&](const std::vector<std::pair<std::string, std::string>>& files) {
    std::ofstream(root + "/boot/initrd.img-0.0.1-test", std::ios::binary | std::ios::trunc)
        << test::newc_cpio(files);
  };
  write_initrd({{"etc/os-release", "VERSION_ID=1\n"}, {"init", init}});
  const test::TestImage v1 = test::build_tiny_image(dir.path(), Arch::x86_64, "1.0.0", key);
  write_initrd(
      {{"etc/os-release", "VERSION_ID=2\n"}, {"init", init}, {"usr/bin/less", "#!less\n"}});
  const test::TestImage v2 =
      test::build_tiny_image(dir.path(), Arch::x86_64, "2.0.0", key, "tiny", {"--no-disk"}, "v2");

  const std::string d = dir / "v2.osupd";
  RunResult r = run({test::osup_build_exe(), "delta", v1.bundle, v2.bundle, "--key",
                     key.private_key, "--out", d});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  UniqueFd fd = open_file(d, O_RDONLY);
  uint64_t start = 0;
  const delta::Header h = delta::read_header(fd.get(), d, &start);
  const delta::FileDelta* initrd = h.file(PayloadKind::initrd);
  REQUIRE(initrd);
  CHECK(initrd->method == delta::FileMethod::zstd_repack);
  CHECK(initrd->data.size < 1024);  // the change, not the packed file (~100 KiB)

  r = test::run_offline_osup(v1.disk, key, "a", {"switch", d});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = test::run_offline_osup(v1.disk, key, "a", {"verify", "b"});
  INFO(r.out + r.err);
  CHECK(r.exit_code == 0);
  std::ifstream in(v2.manifest, std::ios::binary);
  const Manifest m2 = Manifest::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  gpt::Table t = gpt::read(v1.disk);
  const auto esp = open_image_esp(v1.disk, t.find("esp")->start);
  const std::optional<std::string> got = esp->read("/osup/b/initrd");
  REQUIRE(got);
  CHECK(to_hex(sha256(*got)) == m2.find(PayloadKind::initrd)->sha256);
}
