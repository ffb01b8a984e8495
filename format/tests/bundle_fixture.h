// Shared by the bundle tests: real bundles of random payloads signed with a fresh key,
// and a reader of tar headers that does not go through libarchive.
#pragma once

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
#include "base/size.h"
#include "format/bundle_reader.h"
#include "format/bundle_writer.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

namespace osup::test {

namespace fs = std::filesystem;

inline std::string file_bytes(const std::string& path) { return read_text_file(path); }

inline void put_bytes(const std::string& path, std::string_view data) {
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
    m.payloads = {
        describe_payload(PayloadKind::kernel, "vmlinuz", dir / "vmlinuz", Compression::none),
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
// Reads the current payload to its end: "KIND=<sha256 of what was read> <bytes>".
inline std::string drain_payload(BundleReader& r, const Payload& p, std::vector<std::byte>& buf) {
  Sha256 h;
  uint64_t n = 0;
  while (size_t got = r.read(buf)) {
    h.update(std::span(buf.data(), got));
    n += got;
  }
  return to_string(p.kind) + "=" + to_hex(h.finish()) + " " + std::to_string(n);
}

inline std::vector<std::string> read_all(int fd, const std::string& name,
                                         const sig::TrustStore& trust, size_t buf_size = 65536) {
  const auto r_source = fd_source(fd, name);
  BundleReader r(*r_source);
  r.verify(trust);
  std::vector<std::string> out;
  std::vector<std::byte> buf(buf_size);
  while (const Payload* p = r.next_payload()) {
    out.push_back(drain_payload(r, *p, buf));
  }
  CHECK(r.next_payload() == nullptr);  // stays at the end
  return out;
}

inline std::vector<std::string> read_file(const std::string& path, const sig::TrustStore& trust,
                                          size_t buf_size = 65536) {
  UniqueFd fd = open_file(path, O_RDONLY);
  return read_all(fd.get(), path, trust, buf_size);
}

inline std::vector<std::string> expected(const Fixture& f) {
  std::vector<std::string> out;
  for (const Payload& p : f.manifest.payloads)
    out.push_back(to_string(p.kind) + "=" + to_hex(sha256_file(f.sources.at(to_string(p.kind)))) +
                  " " + std::to_string(fs::file_size(f.sources.at(to_string(p.kind)))));
  return out;
}

struct TarEntry {
  std::string name;
  uint64_t data_offset, size;
};

// Walks plain ustar headers (what our writer emits for small entries).
inline std::vector<TarEntry> tar_entries(const std::string& bytes) {
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
inline std::string repack(const Fixture& f, const std::string& bundle, const std::string& out,
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

}  // namespace osup::test
