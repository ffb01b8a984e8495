#include "format/tests/bundle_fixture.h"

using namespace osup;
using namespace osup::test;

TEST_CASE("a corrupted payload byte is caught", "[unit]") {
  Fixture f;
  std::string good = file_bytes(f.write("a.osup"));
  auto entries = tar_entries(good);
  REQUIRE(entries.size() >= 3);
  for (size_t i : {2, 3, 5}) {  // stored kernel, compressed initrd, compressed root
    for (uint64_t at : {uint64_t{0}, entries[i].size / 2, entries[i].size - 1}) {
      CAPTURE(entries[i].name, at);
      std::string bad = good;
      bad[entries[i].data_offset + at] ^= 0x01;
      put_bytes(f.dir / "bad.osup", bad);
      std::string payload = to_string(f.manifest.payloads[i - 2].kind);
      CHECK_THROWS_WITH(read_file(f.dir / "bad.osup", f.trust),
                        Catch::Contains("payload '" + payload + "'") && Catch::Contains("corrupt"));
    }
  }
}

TEST_CASE("a truncated bundle is an error at any offset", "[unit]") {
  Fixture f;
  std::string good = file_bytes(f.write("a.osup"));
  auto e = tar_entries(good);
  REQUIRE(e.size() == 6);
  std::vector<uint64_t> cuts = {0,
                                100,
                                512 + 5,
                                e[1].data_offset + 3,
                                e[2].data_offset - 512,
                                e[2].data_offset + 10,
                                e[3].data_offset + e[3].size / 2,
                                e[4].data_offset - 512,  // at an entry boundary
                                e[5].data_offset - 512,
                                e[5].data_offset + 1,
                                e[5].data_offset + e[5].size / 2,
                                e[5].data_offset + e[5].size - 1};
  for (uint64_t cut : cuts) {
    CAPTURE(cut);
    put_bytes(f.dir / "cut.osup", std::string_view(good).substr(0, cut));
    CHECK_THROWS_AS(read_file(f.dir / "cut.osup", f.trust), Error);
  }
  put_bytes(f.dir / "cut.osup", "");
  CHECK_THROWS_WITH(read_file(f.dir / "cut.osup", f.trust), Catch::Contains("is empty"));
  put_bytes(f.dir / "cut.osup", std::string_view(good).substr(0, e[5].data_offset - 512));
  CHECK_THROWS_WITH(read_file(f.dir / "cut.osup", f.trust),
                    "bundle is truncated: payload 'root' missing");
  put_bytes(f.dir / "cut.osup", std::string_view(good).substr(0, e[5].data_offset + 1000));
  CHECK_THROWS_WITH(read_file(f.dir / "cut.osup", f.trust), Catch::Contains("payload 'root'"));
}

TEST_CASE("bundles that are not signed right are rejected before any payload", "[unit]") {
  Fixture f;
  std::string good = f.write("a.osup");
  const std::vector<std::string> payload_files = {"vmlinuz", "initrd.zst", "root.verity.zst",
                                                  "root.erofs.zst"};
  auto with = [&](std::vector<std::string> head) {
    head.insert(head.end(), payload_files.begin(), payload_files.end());
    return head;
  };

  SECTION("unsigned") {
    std::string b = repack(f, good, "u.tar", with({"manifest.json"}));
    CHECK_THROWS_WITH(read_file(b, f.trust),
                      b + " is not a signed osup bundle: second entry is 'vmlinuz', expected "
                          "manifest.json.sig");
  }
  SECTION("first entries swapped") {
    std::string b = repack(f, good, "s.tar", with({"manifest.json.sig", "manifest.json"}));
    CHECK_THROWS_WITH(read_file(b, f.trust),
                      b + " is not an osup bundle: first entry is 'manifest.json.sig', expected "
                          "manifest.json");
  }
  SECTION("signed with another key") {
    sig::PrivateKey other = Fixture::make_key(f.dir, "other");
    std::string b = f.write("o.osup", &other);
    CHECK_THROWS_WITH(read_file(b, f.trust),
                      "bundle signature does not match any trusted key (keys in memory); "
                      "was it signed with the right key?");
  }
  SECTION("manifest edited after signing") {
    std::string x = f.dir / "x-edit";
    fs::create_directory(x);
    run_checked({"tar", "-xf", good, "-C", x});
    std::string m = file_bytes(x + "/manifest.json");
    auto pos = m.find("\"1.0.0\"");
    REQUIRE(pos != std::string::npos);
    m.replace(pos, 7, "\"9.0.0\"");
    put_bytes(x + "/manifest.json", m);
    std::vector<std::string> argv = {"tar", "--format=ustar", "-cf", f.dir / "e.tar", "-C", x};
    for (const auto& n : with({"manifest.json", "manifest.json.sig"})) argv.push_back(n);
    run_checked(argv);
    UniqueFd fd = open_file(f.dir / "e.tar", O_RDONLY);
    const auto r_source = fd_source(fd.get(), "e.tar");
    BundleReader r(*r_source);
    r.read_header();
    CHECK(r.parse_unverified().version == "9.0.0");  // readable, but not trusted
    CHECK_THROWS_WITH(r.verify(f.trust), Catch::StartsWith("bundle signature does not match"));
    CHECK_THROWS_WITH(r.next_payload(), Catch::Contains("earlier error"));
  }
  SECTION("not a tar at all") {
    put_bytes(f.dir / "junk", std::string(4096, 'j'));
    CHECK_THROWS_WITH(read_file(f.dir / "junk", f.trust),
                      Catch::StartsWith(f.dir / "junk" + " is not an osup bundle"));
  }
}

TEST_CASE("unexpected, duplicate and reordered payload entries are rejected", "[unit]") {
  Fixture f;
  std::string good = f.write("a.osup");
  const std::vector<std::string> head = {"manifest.json", "manifest.json.sig"};
  auto bundle = [&](const std::string& out, std::vector<std::string> rest) {
    std::vector<std::string> all = head;
    all.insert(all.end(), rest.begin(), rest.end());
    return repack(f, good, out, all);
  };
  // GNU tar's own ustar output of the right entries must be accepted: the format is tar.
  CHECK(read_file(bundle("ok.tar", {"vmlinuz", "initrd.zst", "root.verity.zst", "root.erofs.zst"}),
                  f.trust) == expected(f));
  CHECK_THROWS_WITH(read_file(bundle("x1.tar", {"evil.sh", "vmlinuz", "initrd.zst",
                                                "root.verity.zst", "root.erofs.zst"}),
                              f.trust),
                    "unexpected entry 'evil.sh' in bundle");
  CHECK_THROWS_WITH(read_file(bundle("x2.tar", {"vmlinuz", "initrd.zst", "root.verity.zst",
                                                "root.erofs.zst", "evil.sh"}),
                              f.trust),
                    "unexpected entry 'evil.sh' in bundle");
  CHECK_THROWS_WITH(read_file(bundle("x3.tar", {"vmlinuz", "vmlinuz", "initrd.zst",
                                                "root.verity.zst", "root.erofs.zst"}),
                              f.trust),
                    "duplicate entry 'vmlinuz' in bundle");
  CHECK_THROWS_WITH(
      read_file(bundle("x4.tar", {"vmlinuz", "root.verity.zst", "initrd.zst", "root.erofs.zst"}),
                f.trust),
      "entry 'root.verity.zst' is out of order in bundle; expected 'initrd.zst'");
  CHECK_THROWS_WITH(
      read_file(bundle("x5.tar", {"vmlinuz", "initrd.zst", "root.verity.zst"}), f.trust),
      "bundle is truncated: payload 'root' missing");
}

TEST_CASE("a payload longer than declared is caught", "[unit]") {
  Fixture f;
  // Declare root one byte shorter than it is (and sign that): the stream has one byte too many.
  Payload& root = f.manifest.payloads[3];
  std::string data = file_bytes(f.sources["root"]);
  root.size = data.size() - 1;
  root.sha256 = to_hex(sha256(std::string_view(data).substr(0, data.size() - 1)));
  std::string json = f.manifest.to_json();
  std::string sig = f.key.sign(json);
  // Bypass the writer's own check by writing the longer file under the shorter description.
  put_bytes(f.dir / "root-short", data.substr(0, data.size() - 1));
  {
    BundleWriter w(f.dir / "long.osup");
    w.write_header(json, sig);
    for (const Payload& p : f.manifest.payloads)
      w.add_payload(
          p, p.kind == PayloadKind::root ? f.dir / "root-short" : f.sources.at(to_string(p.kind)));
    w.finish();
  }
  // Swap in a root entry compressed from the full data with GNU tar + zstd CLI.
  std::string x = f.dir / "x-long";
  fs::create_directory(x);
  run_checked({"tar", "-xf", f.dir / "long.osup", "-C", x});
  run_checked({"zstd", "-q", "-f", f.sources["root"], "-o", x + "/root.erofs.zst"});
  run_checked({"tar", "--format=ustar", "-cf", f.dir / "long.tar", "-C", x, "manifest.json",
               "manifest.json.sig", "vmlinuz", "initrd.zst", "root.verity.zst", "root.erofs.zst"});
  CHECK_THROWS_WITH(read_file(f.dir / "long.tar", f.trust),
                    "payload 'root' is longer than declared; the bundle is corrupt");
}

TEST_CASE("the writer checks its inputs and leaves nothing behind on error", "[unit]") {
  Fixture f;
  std::string json = f.manifest.to_json();
  std::string sig = f.key.sign(json);
  const std::string out = f.dir / "w.osup";
  {
    BundleWriter w(out);
    CHECK_THROWS_WITH(w.add_payload(f.manifest.payloads[0], f.sources["kernel"]),
                      Catch::Contains("before the manifest"));
    w.write_header(json, sig);
    CHECK_THROWS_WITH(w.add_payload(f.manifest.payloads[1], f.sources["initrd"]),
                      Catch::Contains("differs from the manifest's next payload 'kernel'"));
    w.add_payload(f.manifest.payloads[0], f.sources["kernel"]);
    CHECK_THROWS_WITH(w.add_payload(f.manifest.payloads[1], f.sources["initrd"], 22),
                      Catch::Contains("zstd level 22"));
    // The source changed after it was described (and signed).
    test::write_random_file(f.dir / "changed", f.manifest.payloads[1].size, 99);
    CHECK_THROWS_WITH(w.add_payload(f.manifest.payloads[1], f.dir / "changed"),
                      Catch::Contains("did the file change"));
    CHECK_THROWS_WITH(w.finish(), Catch::Contains("without payload 'initrd'"));
    CHECK(fs::exists(out + ".tmp"));
  }
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(out + ".tmp"));
  CHECK_FALSE(fs::exists(out + ".payload.tmp"));

  BundleWriter w2(out);
  CHECK_THROWS_WITH(w2.write_header("{}", sig), Catch::Contains("field 'format' is missing"));
}

TEST_CASE("describe_payload reports size and sha256 of the uncompressed file", "[unit]") {
  TempDir d;
  put_bytes(d / "f", "abc");
  Payload p = describe_payload(PayloadKind::kernel, "vmlinuz", d / "f", Compression::none);
  CHECK(p.size == 3);
  CHECK(p.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(p.compression == Compression::none);
  CHECK(describe_payload(PayloadKind::root, "root.zst", d / "f", Compression::zstd).compression ==
        Compression::zstd);
  CHECK_THROWS_WITH(describe_payload(PayloadKind::root, "r", d / "missing", Compression::zstd),
                    Catch::Contains("missing"));
}

TEST_CASE("reading a large bundle keeps memory small", "[unit]") {
  Fixture f;
  // 72 MiB root: 8 MiB random, then zeros that decompress far faster than they read.
  test::write_random_file(f.dir / "big", 8 * MiB, 7);
  {
    std::ofstream o(f.dir / "big", std::ios::binary | std::ios::app);
    std::string zeros(1 * MiB, '\0');
    for (int i = 0; i < 64; ++i) o.write(zeros.data(), zeros.size());
  }
  f.sources["root"] = f.dir / "big";
  f.manifest.payloads[3] =
      describe_payload(PayloadKind::root, "root.erofs.zst", f.dir / "big", Compression::zstd);
  f.manifest.verity.data_size = f.manifest.payloads[3].size;
  std::string b = f.write("big.osup");

  // Measure in a child so the peak is the reader's alone, not the test binary's history.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 1;
    try {
      rc = read_file(b, f.trust, 256 << 10).size() == 4 ? 0 : 2;
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  int status = 0;
  struct rusage ru {};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CAPTURE(ru.ru_maxrss);
  CHECK(ru.ru_maxrss < 32L * 1024);  // KiB: well below the payload's 72 MiB
}

TEST_CASE("an empty compressed payload round-trips", "[unit]") {
  Fixture f;
  put_bytes(f.dir / "initrd", "");
  f.manifest.payloads[1] =
      describe_payload(PayloadKind::initrd, "initrd.zst", f.dir / "initrd", Compression::zstd);
  CHECK(read_file(f.write("e.osup"), f.trust) == expected(f));
}

TEST_CASE("a zstd frame needing a huge window is refused, not allocated", "[unit]") {
  Fixture f;
  std::string good = f.write("a.osup");
  std::string x = f.dir / "x-win";
  fs::create_directory(x);
  run_checked({"tar", "-xf", good, "-C", x});
  // From stdin the size is unknown, so zstd keeps the full 128 MiB window of --long=27.
  run_checked({"sh", "-c", "zstd -q --long=27 < \"$0\" > \"$1\"", f.sources["root"],
               x + "/root.erofs.zst"});
  run_checked({"tar", "--format=ustar", "-cf", f.dir / "win.tar", "-C", x, "manifest.json",
               "manifest.json.sig", "vmlinuz", "initrd.zst", "root.verity.zst", "root.erofs.zst"});
  CHECK_THROWS_WITH(read_file(f.dir / "win.tar", f.trust),
                    Catch::Contains("payload 'root': its zstd window is larger than 8 MiB"));
}

TEST_CASE("skip_sha256_for_current hands the content check to the caller, not the size check",
          "[unit]") {
  Fixture f;
  std::string x = f.dir / "x";
  fs::create_directory(x);
  run_checked({"tar", "-xf", f.write("a.osup"), "-C", x});
  // Re-pack root from DATA (GNU tar + zstd CLI): the signed manifest still describes the original.
  auto repack = [&](const std::string& data, const std::string& name) {
    put_bytes(f.dir / "root-other", data);
    run_checked({"zstd", "-q", "-f", f.dir / "root-other", "-o", x + "/root.erofs.zst"});
    run_checked({"tar", "--format=ustar", "-cf", f.dir / name, "-C", x, "manifest.json",
                 "manifest.json.sig", "vmlinuz", "initrd.zst", "root.verity.zst",
                 "root.erofs.zst"});
    return f.dir / name;
  };
  // Reads root with or without its sha256; returns the bytes read.
  auto read_root = [&](const std::string& path, bool skip) {
    UniqueFd fd = open_file(path, O_RDONLY);
    const auto r_source = fd_source(fd.get(), path);
    BundleReader r(*r_source);
    r.verify(f.trust);
    std::string out;
    std::vector<std::byte> buf(65536);
    while (const Payload* p = r.next_payload()) {
      if (p->kind != PayloadKind::root) continue;
      if (skip) r.skip_sha256_for_current();
      while (size_t n = r.read(buf)) out.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    return out;
  };
  std::string data = file_bytes(f.sources["root"]);
  std::string flipped = data;
  flipped[12345] ^= 0x20;
  const std::string other = repack(flipped, "flipped.osup");
  CHECK_THROWS_WITH(read_root(other, false),
                    "payload 'root': sha256 mismatch; the bundle is corrupt");
  CHECK(read_root(other, true) == flipped);  // the caller (verity) must catch it
  const std::string shorter = repack(data.substr(0, data.size() - 4096), "short.osup");
  CHECK_THROWS_WITH(read_root(shorter, true), Catch::Contains("payload 'root' is truncated"));

  // Only for a payload that is open and not yet read.
  UniqueFd fd = open_file(f.dir / "a.osup", O_RDONLY);
  const auto r_source = fd_source(fd.get(), "a.osup");
  BundleReader r(*r_source);
  r.verify(f.trust);
  CHECK_THROWS_WITH(r.skip_sha256_for_current(), Catch::Contains("call next_payload() before"));
  REQUIRE(r.next_payload());
  std::vector<std::byte> buf(100);
  REQUIRE(r.read(buf) > 0);
  CHECK_THROWS_WITH(r.skip_sha256_for_current(), Catch::Contains("only be skipped before reading"));
}

namespace {

// A file source that fails any read reaching past `limit`: where the signature entry ends.
class FencedSource final : public ByteSource {
 public:
  FencedSource(const std::string& path, uint64_t limit)
      : inner_(open_file_source(path)), limit_(limit) {}
  std::string name() const override { return inner_->name(); }
  size_t read(std::span<std::byte> buf) override {
    if (inner_->position() + buf.size() > limit_)
      fail("read of " + std::to_string(buf.size()) + " bytes at " +
           std::to_string(inner_->position()) + " reaches past the signature");
    return inner_->read(buf);
  }
  uint64_t position() const override { return inner_->position(); }

 private:
  std::unique_ptr<ByteSource> inner_;
  uint64_t limit_;
};

}  // namespace

TEST_CASE("a bundle signed by another key is refused having read no payload byte", "[unit]") {
  Fixture f;
  sig::PrivateKey other = Fixture::make_key(f.dir, "other");
  const std::string foreign = f.write("o.osup", &other), good = f.write("g.osup");
  const std::vector<TarEntry> entries = tar_entries(file_bytes(foreign));
  REQUIRE(entries.size() >= 3);
  REQUIRE(entries[1].name == "manifest.json.sig");
  // The end of the signature entry's data, padded to the tar block: the first payload's header.
  const uint64_t fence = entries[1].data_offset + align_up(entries[1].size, 512);
  REQUIRE(entries[2].data_offset == fence + 512);

  FencedSource source(foreign, fence);
  BundleReader reader(source);
  CHECK_THROWS_WITH(reader.verify(f.trust),
                    Catch::StartsWith("bundle signature does not match any trusted key"));
  CHECK(source.position() <= fence);

  // The fence holds: the good bundle verifies behind it, and its first payload is past it.
  FencedSource good_source(good, fence);
  BundleReader good_reader(good_source);
  CHECK_NOTHROW(good_reader.verify(f.trust));
  CHECK_THROWS_WITH(good_reader.next_payload(), Catch::Contains("reaches past the signature"));
}
