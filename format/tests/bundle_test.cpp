#include "format/bundle_reader.h"
#include "format/bundle_writer.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "format/sha256.h"
#include "base/size.h"
#include "tests/support/test_support.h"

using namespace osup;
using osup::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string file_bytes(const std::string& path) { return read_text_file(path); }

void put_bytes(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(data.data(), data.size());
}

// A keypair, four payload sources and a manifest describing them.
struct Fixture {
  TempDir dir;
  sig::PrivateKey key;
  sig::TrustStore trust;
  Manifest manifest;
  std::map<std::string, std::string> sources;  // payload name -> source path

  static sig::PrivateKey make_key(const TempDir& d, const std::string& n) {
    sig::generate_keypair(sig::KeyType::ed25519, d / (n + ".pem"), d / (n + ".pub"));
    return sig::PrivateKey::load(d / (n + ".pem"));
  }

  Fixture() : key(make_key(dir, "ci")) {
    trust.add(sig::PublicKey::load(dir / "ci.pub"));
    test::write_random_file(dir / "vmlinuz", 5000, 1);
    test::write_random_file(dir / "initrd", 1 * MiB + 7, 2);
    test::write_random_file(dir / "verity", 12288, 3);
    // Exactly two writer chunks, half compressible: exercises the chunk edge and real zstd blocks.
    test::write_random_file(dir / "root", 1 * MiB, 4);
    {
      std::ofstream f(dir / "root", std::ios::binary | std::ios::app);
      std::string zeros(1 * MiB, '\0');
      f.write(zeros.data(), zeros.size());
    }
    sources = {{"kernel", dir / "vmlinuz"},
               {"initrd", dir / "initrd"},
               {"verity", dir / "verity"},
               {"root", dir / "root"}};
    Manifest& m = manifest;
    m.name = "minimal";
    m.version = "1.0.0";
    m.arch = "x86_64";
    m.compatible = "osup-minimal-x86_64";
    m.filesystem = "erofs";
    m.created = 1700000000;
    m.verity.root_hash = std::string(64, 'a');
    m.verity.uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    m.verity.data_size = 2 * MiB;
    m.verity.hash_size = 12288;
    m.boot.cmdline = "quiet";
    m.boot.kernel_version = "6.1.0";
    m.payloads = {describe_payload(PayloadKind::kernel, "vmlinuz", dir / "vmlinuz", Compression::none),
                  describe_payload(PayloadKind::initrd, "initrd.zst", dir / "initrd", Compression::zstd),
                  describe_payload(PayloadKind::verity, "root.verity.zst", dir / "verity", Compression::zstd),
                  describe_payload(PayloadKind::root, "root.erofs.zst", dir / "root", Compression::zstd)};
  }

  std::string write(const std::string& name, const sig::PrivateKey* signer = nullptr) {
    std::string json = manifest.to_json();
    BundleWriter w(dir / name);
    w.write_header(json, (signer ? *signer : key).sign(json));
    for (const Payload& p : manifest.payloads) w.add_payload(p, sources.at(to_string(p.kind)));
    w.finish();
    return dir / name;
  }
};

// Reads a whole bundle; returns "name=sha256 size" lines of what the reader produced.
std::vector<std::string> read_all(int fd, const std::string& name, const sig::TrustStore& trust,
                                  size_t buf_size = 65536) {
  const auto r_source = fd_source(fd, name);
  BundleReader r(*r_source);
  r.verify(trust);
  std::vector<std::string> out;
  std::vector<std::byte> buf(buf_size);
  while (const Payload* p = r.next_payload()) {
    Sha256 h;
    uint64_t n = 0;
    while (size_t got = r.read(buf)) {
      h.update(std::span(buf.data(), got));
      n += got;
    }
    out.push_back(to_string(p->kind) + "=" + to_hex(h.finish()) + " " + std::to_string(n));
  }
  CHECK(r.next_payload() == nullptr);  // stays at the end
  return out;
}

std::vector<std::string> read_file(const std::string& path, const sig::TrustStore& trust,
                                   size_t buf_size = 65536) {
  UniqueFd fd = open_file(path, O_RDONLY);
  return read_all(fd.get(), path, trust, buf_size);
}

std::vector<std::string> expected(const Fixture& f) {
  std::vector<std::string> out;
  for (const Payload& p : f.manifest.payloads)
    out.push_back(to_string(p.kind) + "=" + to_hex(sha256_file(f.sources.at(to_string(p.kind)))) + " " +
                  std::to_string(fs::file_size(f.sources.at(to_string(p.kind)))));
  return out;
}

struct TarEntry {
  std::string name;
  uint64_t data_offset, size;
};

// Walks plain ustar headers (what our writer emits for small entries).
std::vector<TarEntry> tar_entries(const std::string& bytes) {
  std::vector<TarEntry> out;
  for (size_t off = 0; off + 512 <= bytes.size();) {
    std::string name(bytes.c_str() + off);
    if (name.empty()) break;
    uint64_t size = std::stoull(bytes.substr(off + 124, 12), nullptr, 8);
    out.push_back({name, off + 512, size});
    off += 512 + align_up(size, 512);
  }
  return out;
}

// Extracts a bundle and re-packs the named files, in that order, with GNU tar.
std::string repack(const Fixture& f, const std::string& bundle, const std::string& out,
                   const std::vector<std::string>& files) {
  std::string x = f.dir / ("x-" + out);
  fs::create_directory(x);
  run_checked({"tar", "-xf", bundle, "-C", x});
  std::ofstream(x + "/evil.sh") << "#!/bin/sh\nrm -rf /\n";
  std::vector<std::string> argv = {"tar", "--format=ustar", "-cf", f.dir / out, "-C", x};
  argv.insert(argv.end(), files.begin(), files.end());
  run_checked(argv);
  return f.dir / out;
}

}  // namespace

TEST_CASE("bundle round-trips from a file", "[unit]") {
  Fixture f;
  std::string b = f.write("a.osup");
  CHECK_FALSE(fs::exists(b + ".tmp"));
  CHECK_FALSE(fs::exists(b + ".payload.tmp"));
  CHECK(read_file(b, f.trust) == expected(f));
  CHECK(read_file(b, f.trust, 7) == expected(f));  // tiny buffers take the same path

  UniqueFd fd0 = open_file(b, O_RDONLY);
  const auto r0_source = fd_source(fd0.get(), b);
  BundleReader r0(*r0_source);
  r0.read_header();
  CHECK_THROWS_WITH(r0.next_payload(), Catch::Contains("before the signature was verified"));

  UniqueFd fd = open_file(b, O_RDONLY);
  const auto r_source = fd_source(fd.get(), b);
  BundleReader r(*r_source);
  r.read_header();
  CHECK(r.manifest_bytes() == f.manifest.to_json());
  CHECK(r.parse_unverified() == f.manifest);
  std::string who;
  CHECK(r.verify(f.trust, &who) == f.manifest);
  CHECK(who == f.key.key_id());
}

TEST_CASE("bundle reads as a stream from a pipe", "[unit]") {
  Fixture f;
  std::string bytes = file_bytes(f.write("a.osup"));
  int p[2];
  REQUIRE(::pipe(p) == 0);
  UniqueFd rd(p[0]);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread writer([&, w = UniqueFd(p[1])] {
    try {
      // Odd-sized writes so tar blocks straddle pipe reads.
      for (size_t off = 0; off < bytes.size(); off += 4099)
        write_all(w.get(),
                  std::as_bytes(
                      std::span(bytes).subspan(off, std::min<size_t>(4099, bytes.size() - off))),
                  "pipe");
    } catch (const Error&) {
    }
  });
  std::vector<std::string> got;
  try {
    got = read_all(rd.get(), "-", f.trust);
  } catch (...) {
    rd.reset();
    writer.join();
    throw;
  }
  writer.join();
  CHECK(got == expected(f));
}

TEST_CASE("uncompressed payloads are read in place from a file, through libarchive from a pipe",
          "[unit]") {
  Fixture f;
  for (Payload& p : f.manifest.payloads) {
    p.compression = Compression::none;
    p.file = p.file.ends_with(".zst") ? p.file.substr(0, p.file.size() - 4) : p.file;
  }
  const std::string b = f.write("none.osup");
  // Which payloads a reader reads in place, and what it read.
  auto read_in_place = [&](const std::string& path, std::vector<bool>* in_place) {
    UniqueFd fd = open_file(path, O_RDONLY);
    const auto r_source = fd_source(fd.get(), path);
    BundleReader r(*r_source);
    r.verify(f.trust);
    std::vector<std::string> out;
    std::vector<std::byte> buf(100000);
    while (const Payload* p = r.next_payload()) {
      in_place->push_back(r.reads_in_place());
      Sha256 h;
      uint64_t n = 0;
      while (size_t got = r.read(buf)) {
        h.update(std::span(buf.data(), got));
        n += got;
      }
      out.push_back(to_string(p->kind) + "=" + to_hex(h.finish()) + " " + std::to_string(n));
    }
    return out;
  };
  std::vector<bool> in_place;
  CHECK(read_in_place(b, &in_place) == expected(f));
  CHECK(in_place == std::vector<bool>(4, true));
  CHECK(read_file(b, f.trust, 7) == expected(f));

  // Other tar writers: plain ustar, and pax with an extended header before every entry.
  for (const char* format : {"ustar", "pax"}) {
    CAPTURE(format);
    std::string x = f.dir / (std::string("x-") + format);
    fs::create_directory(x);
    run_checked({"tar", "-xf", b, "-C", x});
    const std::string t = f.dir / (std::string(format) + ".tar");
    run_checked({"tar", std::string("--format=") + format, "-cf", t, "-C", x, "manifest.json",
                 "manifest.json.sig", "vmlinuz", "initrd", "root.verity", "root.erofs"});
    in_place.clear();
    CHECK(read_in_place(t, &in_place) == expected(f));
    CHECK(in_place == std::vector<bool>(4, true));
  }

  // A flipped byte anywhere in a payload read in place is caught by its sha256.
  const std::string good = file_bytes(b);
  auto entries = tar_entries(good);
  REQUIRE(entries.size() == 6);
  for (uint64_t at : {uint64_t{0}, entries[5].size / 2, entries[5].size - 1}) {
    CAPTURE(at);
    std::string bad = good;
    bad[entries[5].data_offset + at] ^= 0x01;
    put_bytes(f.dir / "bad.osup", bad);
    CHECK_THROWS_WITH(read_file(f.dir / "bad.osup", f.trust),
                      "payload 'root': sha256 mismatch; the bundle is corrupt");
  }
  // Cut inside the data read in place.
  put_bytes(f.dir / "cut.osup", std::string_view(good).substr(0, entries[5].data_offset + 1000));
  CHECK_THROWS_WITH(read_file(f.dir / "cut.osup", f.trust),
                    Catch::Contains("payload 'root'") && Catch::Contains("truncated"));

  // From a pipe the same bundle goes through libarchive.
  int p[2];
  REQUIRE(::pipe(p) == 0);
  UniqueFd rd(p[0]);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread writer([&, w = UniqueFd(p[1])] {
    try {
      write_all(w.get(), std::as_bytes(std::span(good)), "pipe");
    } catch (const Error&) {
    }
  });
  const auto r_source = fd_source(rd.get(), "stdin");
  BundleReader r(*r_source);
  r.verify(f.trust);
  std::vector<std::byte> buf(65536);
  std::vector<std::string> got;
  while (const Payload* pl = r.next_payload()) {
    CHECK_FALSE(r.reads_in_place());
    Sha256 h;
    uint64_t n = 0;
    while (size_t k = r.read(buf)) {
      h.update(std::span(buf.data(), k));
      n += k;
    }
    got.push_back(to_string(pl->kind) + "=" + to_hex(h.finish()) + " " + std::to_string(n));
  }
  writer.join();
  CHECK(got == expected(f));
}

TEST_CASE("bundle bytes are deterministic and tar lists the entries in order", "[unit]") {
  Fixture f;
  std::string a = file_bytes(f.write("a.osup")), b = file_bytes(f.write("b.osup"));
  CHECK(a == b);
  CHECK(a.size() % 512 == 0);

  RunResult r = run_checked({"tar", "-tvf", f.dir / "a.osup", "--numeric-owner", "--utc"});
  std::vector<std::string> lines;
  for (size_t s = 0, e; (e = r.out.find('\n', s)) != std::string::npos; s = e + 1)
    lines.push_back(r.out.substr(s, e - s));
  REQUIRE(lines.size() == 6);
  const char* order[] = {"manifest.json", "manifest.json.sig", "vmlinuz",
                         "initrd.zst",    "root.verity.zst",   "root.erofs.zst"};
  for (size_t i = 0; i < 6; ++i) {
    CAPTURE(lines[i]);
    CHECK(lines[i].ends_with(std::string(" ") + order[i]));
    CHECK(lines[i].starts_with("-rw-r--r-- 0/0"));
    CHECK(lines[i].find("2023-11-14 22:13") != std::string::npos);  // created = 1700000000
  }
  // kernel is stored, the rest are zstd frames.
  auto entries = tar_entries(a);
  REQUIRE(entries.size() == 6);
  CHECK(entries[2].size == 5000);
  CHECK(a.substr(entries[3].data_offset, 4) == "\x28\xb5\x2f\xfd");
  CHECK(entries[5].size < 2 * MiB);  // the zero half compressed away
}

TEST_CASE("a corrupted payload byte is caught", "[unit]") {
  Fixture f;
  std::string good = file_bytes(f.write("a.osup"));
  auto entries = tar_entries(good);
  REQUIRE(entries.size() == 6);
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
      w.add_payload(p, p.kind == PayloadKind::root ? f.dir / "root-short" : f.sources.at(to_string(p.kind)));
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
  CHECK(describe_payload(PayloadKind::root, "root.zst", d / "f", Compression::zstd).compression == Compression::zstd);
  CHECK_THROWS_WITH(describe_payload(PayloadKind::root, "r", d / "missing", Compression::zstd), Catch::Contains("missing"));
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
  f.manifest.payloads[3] = describe_payload(PayloadKind::root, "root.erofs.zst", f.dir / "big", Compression::zstd);
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
  CHECK(ru.ru_maxrss < 32 * 1024);  // KiB: well below the payload's 72 MiB
}

TEST_CASE("an empty compressed payload round-trips", "[unit]") {
  Fixture f;
  put_bytes(f.dir / "initrd", "");
  f.manifest.payloads[1] = describe_payload(PayloadKind::initrd, "initrd.zst", f.dir / "initrd", Compression::zstd);
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
