// libFuzzer target: BundleReader on arbitrary bytes (fed through a memfd, as a file would be)
// must only ever throw osup::Error. The trust store holds a fixed test key, so inputs that keep
// a validly signed header reach payload iteration and decompression.
//
// Seeds: run once with OSUP_FUZZ_SEED_DIR=DIR to write small bundles signed with that key
// into DIR, then fuzz with DIR as the corpus.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "format/bundle_reader.h"
#include "format/bundle_writer.h"
#include "format/signature.h"

namespace {

// A throwaway Ed25519 key for fuzzing only; it signs nothing real.
constexpr const char* kFuzzKey =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIM6eLSi3a90Qv002tTw8pl2kdbZzKyAstOFDVVjCaXUO\n"
    "-----END PRIVATE KEY-----\n";

osup::sig::TrustStore* trust = nullptr;

void write_file(const std::string& path, const std::string& content) {
  osup::UniqueFd fd = osup::open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
  osup::write_all(fd.get(), std::as_bytes(std::span(content.data(), content.size())), path);
}

void write_seeds(const std::string& dir, const osup::sig::PrivateKey& key) {
  std::string kernel(3000, 'k'), root(8192, '\0'), verity(4096, 'v');
  for (size_t i = 0; i < root.size(); i += 7) root[i] = static_cast<char>(i);
  write_file(dir + "/src-kernel", kernel);
  write_file(dir + "/src-root", root);
  write_file(dir + "/src-verity", verity);
  for (int with_kernel = 0; with_kernel < 2; ++with_kernel) {
    osup::Manifest m;
    m.name = "fuzz";
    m.version = "1.0";
    m.arch = "x86_64";
    m.compatible = "fuzz";
    m.filesystem = "erofs";
    m.verity.root_hash = std::string(64, '0');
    m.verity.uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    m.verity.data_size = root.size();
    m.verity.hash_size = verity.size();
    if (with_kernel) {
      m.boot.kernel_version = "6.1";
      m.payloads.push_back(osup::describe_payload(osup::PayloadKind::kernel, "vmlinuz",
                                                  dir + "/src-kernel", osup::Compression::none));
    }
    m.payloads.push_back(osup::describe_payload(osup::PayloadKind::verity, "v.zst",
                                                dir + "/src-verity", osup::Compression::zstd));
    m.payloads.push_back(osup::describe_payload(osup::PayloadKind::root, "r.zst", dir + "/src-root",
                                                osup::Compression::zstd));
    std::string json = m.to_json();
    osup::BundleWriter w(dir + "/seed-" + std::to_string(with_kernel) + ".osup");
    w.write_header(json, key.sign(json));
    for (const auto& p : m.payloads) w.add_payload(p, dir + "/src-" + to_string(p.kind));
    w.finish();
  }
  for (const char* n : {"src-kernel", "src-root", "src-verity"}) ::unlink((dir + "/" + n).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto key = osup::sig::PrivateKey::from_pem(kFuzzKey, "fuzz key");
  trust = new osup::sig::TrustStore();
  trust->add(osup::sig::PublicKey::from_pem(key.public_pem(), "fuzz key"));
  if (const char* dir = std::getenv("OSUP_FUZZ_SEED_DIR")) write_seeds(dir, key);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  osup::UniqueFd fd(::memfd_create("bundle", MFD_CLOEXEC));
  if (!fd.valid()) std::abort();
  osup::write_all(fd.get(), std::as_bytes(std::span(data, size)), "memfd");
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) std::abort();

  const auto r_source = osup::fd_source(fd.get(), "fuzz");
  osup::BundleReader r(*r_source);
  try {
    r.read_header();
  } catch (const osup::Error&) {
    return 0;
  }
  try {
    (void)r.parse_unverified();
  } catch (const osup::Error&) {
  }
  try {
    r.verify(*trust);
    std::vector<std::byte> buf(4096);
    while (r.next_payload())
      while (r.read(buf) > 0) {
      }
  } catch (const osup::Error&) {
  }
  return 0;
}
