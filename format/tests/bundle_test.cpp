#include "format/tests/bundle_fixture.h"

using namespace osup;
using namespace osup::test;

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
      out.push_back(drain_payload(r, *p, buf));
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
    got.push_back(drain_payload(r, *pl, buf));
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
