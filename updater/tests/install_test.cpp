// install_bundle's and rollback's decisions, on a real GPT disk image with a mounted-directory
// ESP, real signed bundles and real verity trees; only the boot loader is the in-memory
// FakeBootControl, so every boot-control call can be seen and any one of them made to fail.
#include "updater/tests/install_fixture.h"

using namespace osup;
using namespace osup::test;

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
  big.root_size = kSlotSize + 64ull * 1024;
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
