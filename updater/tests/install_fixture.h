// Shared by the updater's unit tests: a real GPT disk image with a mounted-directory ESP,
// signed releases built through the format API, and FakeBootControl as the loader.
#pragma once

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <optional>

#include "base/error.h"
#include "base/fd.h"
#include "boot/fake_boot_control.h"
#include "boot/publish_slot.h"
#include "boot/slot_boot.h"
#include "format/bundle_writer.h"
#include "format/gpt.h"
#include "format/sha256.h"
#include "format/verity.h"
#include "tests/support/test_support.h"
#include "updater/install.h"
#include "updater/rollback.h"
#include "updater/verify.h"

namespace osup::test {

using Catch::Matchers::Contains;
using layout::Slot;
namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1024ull * 1024;
constexpr uint64_t kSlotSize = 8 * kMiB;    // each root partition
constexpr uint64_t kVeritySize = 1 * kMiB;  // each verity partition

struct ReleaseSpec {
  std::string version = "1.0.0";
  std::string arch = "x86_64";
  std::string compatible = "osup-test-x86_64";
  uint64_t root_size = 2 * kMiB;            // a multiple of 4096
  std::optional<uint64_t> corrupt_block;    // flip a byte of this root block after the tree
  const sig::PrivateKey* signer = nullptr;  // default: the disk's trusted key
};

// A signed release: its bundle, and the files and signed bytes the bundle was made from.
struct Release {
  Manifest manifest;
  std::string manifest_json, signature;
  std::string bundle, root, verity, kernel, initrd;
  [[nodiscard]] Digest root_hash() const {
    return digest_from_hex(manifest.verity.root_hash, "root hash");
  }
};

// The one place that knows how a bundle is put together through the public format API
// (BundleWriter, describe_payload, verity::build, Manifest, PrivateKey), as the builder does:
// kernel and initrd first, then the verity tree, then the root image.
inline Release make_release(const std::string& dir, const sig::PrivateKey& key,
                            const ReleaseSpec& s) {
  static uint32_t seed = 100;
  const std::string stem = dir + "/" + s.version + "-" + s.arch + "-" + std::to_string(++seed);
  Release r;
  r.root = stem + ".root";
  r.verity = stem + ".verity";
  r.kernel = stem + ".vmlinuz";
  r.initrd = stem + ".initrd";
  r.bundle = stem + ".osup";
  test::write_random_file(r.root, s.root_size, seed);
  test::write_random_file(r.kernel, 70 * 1024 + 5, seed + 1000);
  test::write_random_file(r.initrd, 30 * 1024 + 3, seed + 2000);
  const verity::Params vp = verity::make_params(s.root_size, stem);
  Digest root_hash;
  {
    UniqueFd data = open_file(r.root, O_RDONLY);
    UniqueFd hash = open_file(r.verity, O_RDWR | O_CREAT | O_TRUNC);
    root_hash = verity::build(data.get(), hash.get(), vp);
  }
  if (s.corrupt_block) {
    // The signed manifest describes these bytes (size, sha256), but the tree does not.
    UniqueFd data = open_file(r.root, O_RDWR);
    std::byte b[1];
    const uint64_t at = *s.corrupt_block * verity::kBlockSize + 17;
    REQUIRE(pread_full(data.get(), b, at, r.root) == 1);
    b[0] ^= std::byte{0x40};
    pwrite_all(data.get(), b, at, r.root);
  }

  Manifest& m = r.manifest;
  m.name = "tiny";
  m.version = s.version;
  m.arch = s.arch;
  m.compatible = s.compatible;
  m.filesystem = "erofs";
  m.created = 1700000000;
  m.verity.root_hash = to_hex(root_hash);
  m.verity.salt = to_hex(vp.salt);
  m.verity.uuid = vp.uuid.str();
  m.verity.data_size = s.root_size;
  m.verity.hash_size = fs::file_size(r.verity);
  m.boot.cmdline = "console=ttyS0";
  m.boot.tries = 3;
  m.boot.kernel_version = "6.1.0-test";
  using K = PayloadKind;
  using C = Compression;
  m.payloads = {describe_payload(K::kernel, "vmlinuz", r.kernel, C::none),
                describe_payload(K::initrd, "initrd", r.initrd, C::none),
                describe_payload(K::verity, "root.verity.zst", r.verity, C::zstd),
                describe_payload(K::root, "root.erofs.zst", r.root, C::zstd)};
  r.manifest_json = m.to_json();
  r.signature = (s.signer ? *s.signer : key).sign(r.manifest_json);
  const std::map<PayloadKind, std::string> sources = {
      {K::kernel, r.kernel}, {K::initrd, r.initrd}, {K::verity, r.verity}, {K::root, r.root}};
  BundleWriter w(r.bundle);
  w.write_header(r.manifest_json, r.signature);
  for (const Payload& p : m.payloads) w.add_payload(p, sources.at(p.kind), 1);
  w.finish();
  return r;
}

inline sig::PrivateKey new_key(const TempDir& dir, const std::string& name) {
  sig::generate_keypair(sig::KeyType::ed25519, dir / (name + ".key"), dir / (name + ".pub"));
  return sig::PrivateKey::load(dir / (name + ".key"));
}

// A 64 MiB sparse disk image with the osup GPT (esp, root-a, root-a-verity, root-b,
// root-b-verity, data), found by discover_disk offline with the ESP in a plain directory.
struct Rig {
  TempDir dir;
  std::string image = dir / "disk.img";
  std::string esp_dir = dir / "esp";
  sig::PrivateKey key = new_key(dir, "ci");
  sig::TrustStore trust;
  OsupDisk disk;
  FakeBootControl boot;

  Rig() {
    trust.add(sig::PublicKey::load(dir / "ci.pub"));
    fs::create_directory(esp_dir);
    auto uuid = [](const char* label) { return Uuid::derived("install-test", label); };
    const Arch arch = Arch::x86_64;
    std::vector<gpt::NewPartition> parts = {
        {layout::kEspLabel, layout::esp_type(), uuid("esp"), 2 * kMiB},
        {layout::root_label(Slot::a), layout::root_type(arch), uuid("ra"), kSlotSize},
        {layout::verity_label(Slot::a), layout::root_verity_type(arch), uuid("va"), kVeritySize},
        {layout::root_label(Slot::b), layout::root_type(arch), uuid("rb"), kSlotSize},
        {layout::verity_label(Slot::b), layout::root_verity_type(arch), uuid("vb"), kVeritySize},
        {layout::kDataLabel, layout::data_type(), uuid("data"), 0}};
    (void)gpt::create(image, 64 * kMiB, uuid("disk"), parts);
    DiscoverOptions o;
    o.disk = image;
    o.esp_mount = esp_dir;
    disk = discover_disk(o);
  }

  Release release(const ReleaseSpec& s) { return make_release(dir.path(), key, s); }
  Release release(const std::string& version) {
    ReleaseSpec s;
    s.version = version;
    return release(s);
  }

  // A slot as the builder leaves the factory slot: partitions written, boot files and the
  // entry published by publish_slot, then marked good.
  void put_slot(Slot s, const Release& r) {
    const SlotPartitions& sp = disk.slot(s);
    UniqueFd fd = open_file(image, O_RDWR);
    for (auto [src, part] : {std::pair{r.root, sp.root}, std::pair{r.verity, sp.verity}}) {
      const std::string bytes = read_text_file(src);
      REQUIRE(bytes.size() <= part.size);
      pwrite_all(fd.get(), std::as_bytes(std::span(bytes.data(), bytes.size())), part.start, image);
    }
    REQUIRE(
        publish_slot(*disk.esp_files, boot, s,
                     SlotRelease{r.manifest, r.manifest_json, r.signature, r.kernel, r.initrd}));
    boot.mark_good(s);
  }

  InstallResult install(const Release& r, bool allow_downgrade = false) {
    InstallOptions o;
    o.bundle = r.bundle;
    o.allow_downgrade = allow_downgrade;
    o.progress = ProgressMode::none;
    return install_bundle(disk, boot, trust, o);
  }

  // Every file on the ESP with its bytes.
  [[nodiscard]] std::map<std::string, std::string> esp() const {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(esp_dir))
      if (e.is_regular_file())
        out[e.path().string().substr(esp_dir.size())] = read_text_file(e.path());
    return out;
  }
  [[nodiscard]] std::string partition(const std::string& label) const {
    return test::partition_sha256(image, label);
  }
  // The boot-control calls made since the log had `from` entries.
  [[nodiscard]] std::vector<std::string> calls_since(size_t from) const {
    const auto& log = boot.log();
    return {log.begin() + static_cast<std::ptrdiff_t>(std::min(from, log.size())), log.end()};
  }
  void flip_byte(uint64_t offset) {
    UniqueFd fd = open_file(image, O_RDWR);
    std::byte b[1];
    REQUIRE(pread_full(fd.get(), b, offset, image) == 1);
    b[0] ^= std::byte{0x01};
    pwrite_all(fd.get(), b, offset, image);
  }
};

using Calls = std::vector<std::string>;

// Everything a refused install must leave as it was.
struct Untouched {
  const Rig& rig;
  std::map<std::string, std::string> esp = rig.esp();
  std::string root_a = rig.partition("root-a"), verity_a = rig.partition("root-a-verity");
  std::string root_b = rig.partition("root-b"), verity_b = rig.partition("root-b-verity");
  size_t calls = rig.boot.log().size();

  void check() const {
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.esp() == esp);
    CHECK(rig.partition("root-a") == root_a);
    CHECK(rig.partition("root-a-verity") == verity_a);
    CHECK(rig.partition("root-b") == root_b);
    CHECK(rig.partition("root-b-verity") == verity_b);
  }
};

inline void check_one_line(const std::string& message) {
  INFO(message);
  CHECK(message.find('\n') == std::string::npos);
}

inline std::string install_error(Rig& rig, const Release& r, bool allow_downgrade = false) {
  try {
    (void)rig.install(r, allow_downgrade);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("install of " << r.manifest.version << " did not fail");
  return "";
}

inline std::string rollback_error(Rig& rig, bool force) {
  try {
    (void)rollback(rig.disk, rig.boot, force ? nullptr : &rig.trust, force);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("rollback did not fail");
  return "";
}

// The slot's root partition holds exactly the release's root image.
inline void check_slot_holds(const Rig& rig, Slot s, const Release& r) {
  const gpt::Partition& p = rig.disk.slot(s).root;
  const std::string want = read_text_file(r.root);
  std::string got(want.size(), '\0');
  UniqueFd fd = open_file(rig.image, O_RDONLY);
  REQUIRE(pread_full(fd.get(), std::as_writable_bytes(std::span(got.data(), got.size())), p.start,
                     rig.image) == want.size());
  CHECK(got == want);
}

}  // namespace osup::test
