// install_bundle's and rollback's decisions, on a real GPT disk image with a mounted-directory
// ESP, real signed bundles and real verity trees; only the boot loader is the in-memory
// FakeBootControl, so every boot-control call can be seen and any one of them made to fail.
#include "updater/install.h"

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
#include "updater/rollback.h"
#include "updater/verify.h"

using namespace osup;
using Catch::Matchers::Contains;
using layout::Slot;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;
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
Release make_release(const std::string& dir, const sig::PrivateKey& key, const ReleaseSpec& s) {
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

sig::PrivateKey new_key(const test::TempDir& dir, const std::string& name) {
  sig::generate_keypair(sig::KeyType::ed25519, dir / (name + ".key"), dir / (name + ".pub"));
  return sig::PrivateKey::load(dir / (name + ".key"));
}

// A 64 MiB sparse disk image with the osup GPT (esp, root-a, root-a-verity, root-b,
// root-b-verity, data), found by discover_disk offline with the ESP in a plain directory.
struct Rig {
  test::TempDir dir;
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

  Release release(ReleaseSpec s) { return make_release(dir.path(), key, s); }
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

void check_one_line(const std::string& message) {
  INFO(message);
  CHECK(message.find('\n') == std::string::npos);
}

std::string install_error(Rig& rig, const Release& r, bool allow_downgrade = false) {
  try {
    (void)rig.install(r, allow_downgrade);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("install of " << r.manifest.version << " did not fail");
  return "";
}

std::string rollback_error(Rig& rig, bool force) {
  try {
    (void)rollback(rig.disk, rig.boot, force ? nullptr : &rig.trust, force);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("rollback did not fail");
  return "";
}

// The slot's root partition holds exactly the release's root image.
void check_slot_holds(const Rig& rig, Slot s, const Release& r) {
  const gpt::Partition& p = rig.disk.slot(s).root;
  const std::string want = read_text_file(r.root);
  std::string got(want.size(), '\0');
  UniqueFd fd = open_file(rig.image, O_RDONLY);
  REQUIRE(pread_full(fd.get(), std::as_writable_bytes(std::span(got.data(), got.size())), p.start,
                     rig.image) == want.size());
  CHECK(got == want);
}

}  // namespace

TEST_CASE("install_bundle fills the slot other than the current one: disable first, install last",
          "[unit]") {
  Rig rig;
  const Release v1 = rig.release("1.0.0");
  rig.put_slot(Slot::a, v1);
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);
  const FakeBootControl::Entry entry_a = rig.boot.entry(Slot::a);
  const std::string root_a = rig.partition("root-a");
  const std::map<std::string, std::string> esp_before = rig.esp();

  const Release v2 = rig.release("2.0.0");
  size_t from = rig.boot.log().size();
  InstallResult r = rig.install(v2);
  CHECK(r.slot == Slot::b);
  CHECK(r.version == "2.0.0");
  CHECK(r.root_bytes == v2.manifest.verity.data_size);
  CHECK(rig.calls_since(from) == Calls{"disable b", "install b"});

  // The new slot: trying with the manifest's tries, the loader's next pick, its entry pointing
  // at its own boot files, which are the bundle's.
  const SlotBoot b = rig.boot.slot(Slot::b);
  CHECK(b.state == SlotState::trying);
  CHECK(b.tries_left == 3);
  CHECK(b.version == "2.0.0");
  CHECK(rig.boot.next_boot() == Slot::b);
  const EntrySpec& spec = rig.boot.entry(Slot::b).spec;
  const SlotEspPaths pb = slot_esp_paths(Slot::b);
  CHECK(spec.kernel == pb.kernel);
  CHECK(spec.initrd == pb.initrd);
  CHECK(spec.cmdline == slot_cmdline(v2.manifest, Slot::b));
  CHECK(spec.title == slot_title(v2.manifest, Slot::b));
  const auto esp = rig.esp();
  CHECK(esp.at(pb.kernel) == read_text_file(v2.kernel));
  CHECK(esp.at(pb.initrd) == read_text_file(v2.initrd));
  CHECK(esp.at(pb.manifest) == v2.manifest_json);
  CHECK(esp.at(pb.signature) == v2.signature);
  check_slot_holds(rig, Slot::b, v2);
  CHECK_NOTHROW(verify_slot(rig.disk, Slot::b, rig.trust, ProgressMode::none));
  // DPS pairing on the real GPT.
  const gpt::Table t = gpt::read(rig.image);
  CHECK(t.find("root-b")->uuid == layout::root_partition_uuid(v2.root_hash()));
  CHECK(t.find("root-b-verity")->uuid == layout::verity_partition_uuid(v2.root_hash()));

  // The running slot: partition, boot files and entry as they were.
  CHECK(rig.partition("root-a") == root_a);
  for (const auto& [path, bytes] : esp_before) CHECK(esp.at(path) == bytes);
  CHECK(rig.boot.entry(Slot::a).boot.generation == entry_a.boot.generation);
  CHECK(rig.boot.entry(Slot::a).boot.state == SlotState::good);
  CHECK(rig.boot.entry(Slot::a).spec.cmdline == entry_a.spec.cmdline);

  SECTION("offline, the current slot is the loader's pick: b, so a is replaced") {
    const std::string root_b = rig.partition("root-b");
    const Release v3 = rig.release("3.0.0");
    from = rig.boot.log().size();
    CHECK(rig.install(v3).slot == Slot::a);
    CHECK(rig.calls_since(from) == Calls{"disable a", "install a"});
    check_slot_holds(rig, Slot::a, v3);
    CHECK(rig.partition("root-b") == root_b);
    CHECK(rig.boot.slot(Slot::b).version == "2.0.0");
    CHECK(rig.boot.next_boot() == Slot::a);
  }
  SECTION("the booted slot, when known, wins over the loader's pick") {
    rig.disk.booted = Slot::a;  // b was installed but a is running (b never came up)
    const Release v3 = rig.release("3.0.0");
    from = rig.boot.log().size();
    CHECK(rig.install(v3).slot == Slot::b);
    CHECK(rig.calls_since(from) == Calls{"disable b", "install b"});
    CHECK(rig.partition("root-a") == root_a);
    CHECK(rig.boot.slot(Slot::b).version == "3.0.0");
  }
}

TEST_CASE("install_bundle refuses another arch, another product, an older version or key",
          "[unit]") {
  Rig rig;
  rig.put_slot(Slot::b, rig.release("0.5.0"));  // an older version in the target slot
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);

  ReleaseSpec arm;
  arm.version = "2.0.0";
  arm.arch = "aarch64";
  arm.compatible = "osup-test-x86_64";
  ReleaseSpec other_product;
  other_product.version = "2.0.0";
  other_product.compatible = "osup-other-x86_64";
  const sig::PrivateKey stranger = new_key(rig.dir, "stranger");
  ReleaseSpec foreign;
  foreign.version = "2.0.0";
  foreign.signer = &stranger;

  struct Case {
    const char* what;
    Release release;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"wrong arch", rig.release(arm),
       "bundle is for aarch64 but this disk is x86_64; use a bundle built with --arch x86_64"},
      {"wrong product", rig.release(other_product),
       "bundle is for 'osup-other-x86_64' but this system runs 'osup-test-x86_64'; use a bundle "
       "built from this system's image spec"},
      {"older", rig.release("0.9.0"),
       "bundle version 0.9.0 is older than the running 1.0.0; pass --allow-downgrade to install "
       "it anyway"},
      {"untrusted key", rig.release(foreign), "does not match any trusted key"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.what) {
      const Untouched before{rig};
      const std::string message = install_error(rig, c.release);
      CHECK_THAT(message, Contains(c.message));
      check_one_line(message);
      before.check();
      CHECK(rig.boot.slot(Slot::b).version == "0.5.0");
      CHECK(rig.boot.slot(Slot::b).state == SlotState::good);
      CHECK(rig.boot.next_boot() == Slot::a);
    }
  }
  SECTION("--allow-downgrade installs the older version") {
    const Release old = rig.release("0.9.0");
    const size_t from = rig.boot.log().size();
    InstallResult r = rig.install(old, true);
    CHECK(r.slot == Slot::b);
    CHECK(r.version == "0.9.0");
    CHECK(rig.calls_since(from) == Calls{"disable b", "install b"});
    CHECK(rig.boot.slot(Slot::b).version == "0.9.0");
    CHECK(rig.boot.next_boot() == Slot::b);
    check_slot_holds(rig, Slot::b, old);
  }
  SECTION("the same version is not a downgrade") {
    CHECK(rig.install(rig.release("1.0.0")).slot == Slot::b);
    CHECK(rig.boot.slot(Slot::b).version == "1.0.0");
  }
}

TEST_CASE("install_bundle refuses a root image too large for the slot before writing anything",
          "[unit]") {
  Rig rig;
  rig.put_slot(Slot::b, rig.release("0.5.0"));
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  ReleaseSpec big;
  big.version = "2.0.0";
  big.root_size = kSlotSize + 64 * 1024;
  const Release r = rig.release(big);
  const Untouched before{rig};
  const std::string message = install_error(rig, r);
  CHECK_THAT(message, Contains("root image is") && Contains("but slot root-b holds"));
  check_one_line(message);
  before.check();
  CHECK(rig.boot.slot(Slot::b).state == SlotState::good);

  // Exactly the slot's size still fits.
  big.root_size = kSlotSize;
  big.version = "2.0.1";
  CHECK(rig.install(rig.release(big)).slot == Slot::b);
}

TEST_CASE("a root block that does not match the verity tree stops the install, target disabled",
          "[unit]") {
  Rig rig;
  rig.put_slot(Slot::b, rig.release("0.5.0"));
  const Release v1 = rig.release("1.0.0");
  rig.put_slot(Slot::a, v1);
  const FakeBootControl::Entry entry_a = rig.boot.entry(Slot::a);
  const std::string root_a = rig.partition("root-a"), verity_a = rig.partition("root-a-verity");
  std::map<std::string, std::string> esp_a;
  for (const auto& [path, bytes] : rig.esp())
    if (!path.starts_with("/osup/b/")) esp_a[path] = bytes;
  REQUIRE(esp_a.count("/osup/a/manifest.json") == 1);

  ReleaseSpec bad;
  bad.version = "2.0.0";
  bad.corrupt_block = 100;
  const Release r = rig.release(bad);
  const size_t from = rig.boot.log().size();
  const std::string message = install_error(rig, r);
  CHECK_THAT(message, Contains("data block 100 does not match its verity hash"));
  check_one_line(message);

  // The target was disabled before its partitions were touched, and nothing more.
  CHECK(rig.calls_since(from) == Calls{"disable b"});
  CHECK(rig.boot.slot(Slot::b).state == SlotState::empty);
  CHECK_FALSE(rig.esp().count("/osup/b/manifest.json"));
  CHECK_FALSE(rig.esp().count("/osup/b/manifest.json.sig"));
  // The running slot is untouched and still the loader's pick.
  CHECK(rig.boot.next_boot() == Slot::a);
  CHECK(rig.boot.entry(Slot::a).boot.generation == entry_a.boot.generation);
  CHECK(rig.boot.entry(Slot::a).boot.state == SlotState::good);
  CHECK(rig.boot.entry(Slot::a).spec.cmdline == entry_a.spec.cmdline);
  CHECK(rig.partition("root-a") == root_a);
  CHECK(rig.partition("root-a-verity") == verity_a);
  std::map<std::string, std::string> esp_a_after;
  for (const auto& [path, bytes] : rig.esp())
    if (!path.starts_with("/osup/b/")) esp_a_after[path] = bytes;
  CHECK(esp_a_after == esp_a);
  // Nothing to roll back to any more.
  CHECK_THAT(rollback_error(rig, false), Contains("slot b holds no bootable version"));
}

TEST_CASE("a failure at the final install() call leaves the old slot the loader's pick", "[unit]") {
  Rig rig;
  rig.put_slot(Slot::b, rig.release("0.5.0"));
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  const FakeBootControl::Entry entry_a = rig.boot.entry(Slot::a);
  const std::string root_a = rig.partition("root-a");
  const Release v2 = rig.release("2.0.0");

  rig.boot.fail_at_call(2);  // 1: disable b, 2: install b
  const size_t from = rig.boot.log().size();
  const std::string message = install_error(rig, v2);
  CHECK_THAT(message, Contains("injected failure") && Contains("(install)"));
  CHECK(rig.calls_since(from) == Calls{"disable b", "install b"});
  CHECK(rig.boot.slot(Slot::b).state == SlotState::empty);
  CHECK(rig.boot.next_boot() == Slot::a);
  CHECK(rig.boot.simulate_boot() == Slot::a);
  CHECK(rig.boot.entry(Slot::a).boot.generation == entry_a.boot.generation);
  CHECK(rig.boot.entry(Slot::a).boot.state == SlotState::good);
  CHECK(rig.partition("root-a") == root_a);

  // Running it again completes the switch.
  CHECK(rig.install(v2).slot == Slot::b);
  CHECK(rig.boot.next_boot() == Slot::b);
  CHECK(rig.boot.slot(Slot::b).state == SlotState::trying);
}

TEST_CASE("rollback refuses an empty slot, even with force", "[unit]") {
  Rig rig;
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);
  const size_t calls = rig.boot.log().size();
  for (bool force : {false, true}) {
    const std::string message = rollback_error(rig, force);
    CHECK_THAT(message, Contains("cannot roll back: slot b holds no bootable version"));
    check_one_line(message);
  }
  CHECK(rig.calls_since(calls) == Calls{});
  CHECK(rig.boot.next_boot() == Slot::a);
}

TEST_CASE("rollback refuses a bad slot unless forced, and a slot that no longer checks out",
          "[unit]") {
  Rig rig;
  const Release v0 = rig.release("0.5.0");
  rig.put_slot(Slot::b, v0);
  rig.put_slot(Slot::a, rig.release("1.0.0"));
  REQUIRE(current_slot(rig.disk, rig.boot) == Slot::a);
  const size_t calls = rig.boot.log().size();

  SECTION("a good slot whose manifest and tree check out becomes first") {
    CHECK(rollback(rig.disk, rig.boot, &rig.trust, false) == Slot::b);
    CHECK(rig.calls_since(calls) == Calls{"make_first b"});
    CHECK(rig.boot.next_boot() == Slot::b);
    CHECK(rig.boot.slot(Slot::b).state == SlotState::good);
    CHECK(rig.boot.slot(Slot::a).state == SlotState::good);
  }
  SECTION("a bad slot is refused without force; with force it becomes first, as good") {
    rig.boot.mark_bad(Slot::b);
    const size_t after_bad = rig.boot.log().size();
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b is marked bad") &&
                            Contains("pass --force to try it anyway"));
    check_one_line(message);
    CHECK(rig.calls_since(after_bad) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);

    CHECK(rollback(rig.disk, rig.boot, nullptr, true) == Slot::b);
    CHECK(rig.calls_since(after_bad) == Calls{"make_first b"});
    CHECK(rig.boot.next_boot() == Slot::b);
    CHECK(rig.boot.slot(Slot::b).state == SlotState::good);
  }
  SECTION("without keys only force may roll back") {
    CHECK_THROWS_WITH(rollback(rig.disk, rig.boot, nullptr, false),
                      Contains("no trusted keys to check slot b with"));
    CHECK(rig.calls_since(calls) == Calls{});
  }
  SECTION("a kept manifest signed by another key is refused") {
    const sig::PrivateKey stranger = new_key(rig.dir, "stranger");
    atomic_write_file(rig.esp_dir + "/osup/b/manifest.json.sig", stranger.sign(v0.manifest_json));
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b's manifest is not signed by a "
                                 "trusted key"));
    check_one_line(message);
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);
  }
  SECTION("a kept manifest changed after signing is refused") {
    std::string text = v0.manifest_json;
    const size_t at = text.find("\"0.5.0\"");
    REQUIRE(at != std::string::npos);
    text[at + 1] = '7';
    atomic_write_file(rig.esp_dir + "/osup/b/manifest.json", text);
    CHECK_THAT(rollback_error(rig, false), Contains("slot b's manifest is not signed by a "
                                                    "trusted key"));
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);
  }
  SECTION("a damaged verity tree is refused; force skips the checks") {
    // The first tree block after the superblock: the level the root hash covers.
    rig.flip_byte(rig.disk.slot(Slot::b).verity.start + verity::kBlockSize + 5);
    const std::string message = rollback_error(rig, false);
    CHECK_THAT(message, Contains("cannot roll back: slot b's verity tree"));
    check_one_line(message);
    CHECK(rig.calls_since(calls) == Calls{});
    CHECK(rig.boot.next_boot() == Slot::a);

    CHECK(rollback(rig.disk, rig.boot, nullptr, true) == Slot::b);
    CHECK(rig.calls_since(calls) == Calls{"make_first b"});
  }
  SECTION("a damaged verity superblock is refused") {
    rig.flip_byte(rig.disk.slot(Slot::b).verity.start + 100);
    CHECK_THAT(rollback_error(rig, false), Contains("cannot roll back: slot b's verity tree"));
    CHECK(rig.calls_since(calls) == Calls{});
  }
}
