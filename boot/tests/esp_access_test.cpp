#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "boot/tests/esp_fixture.h"
#include "format/sha256.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;
using layout::Slot;

TEST_CASE("ESP access round-trips files on a directory and in FAT images", "[unit]") {
  Esp e(GENERATE(as<std::string>{}, "mounted", "image@0", "image@1MiB"));
  INFO(e.kind);
  EspAccess& esp = *e.esp;

  CHECK(esp.list("/nothing").empty());
  CHECK_FALSE(esp.read("/nothing/x").has_value());
  CHECK_FALSE(esp.exists("/loader"));

  esp.mkdirs("/loader/entries");
  esp.mkdirs("/loader/entries");  // existing is fine
  CHECK(esp.exists("/loader/entries"));
  CHECK(esp.list("/loader") == std::vector<std::string>{"entries"});

  const std::string binary = std::string("line1\nline2") + std::string(1, '\0') + "\xff\\end";
  esp.write_atomic("/loader/entries/osup-a+3.conf", binary);
  CHECK(esp.read("/loader/entries/osup-a+3.conf") == binary);
  esp.write_atomic("/loader/entries/osup-a+3.conf", "replaced");
  CHECK(esp.read("/loader/entries/osup-a+3.conf") == "replaced");
  esp.write_atomic("/loader/entries/osup-b.conf", "b");
  CHECK(esp.list("/loader/entries") ==
        std::vector<std::string>{"osup-a+3.conf", "osup-b.conf"});            // no .tmp left over
  if (e.kind != "mounted") CHECK(esp.exists("/LOADER/Entries/OSUP-B.CONF"));  // FAT ignores case

  esp.rename("/loader/entries/osup-a+3.conf", "/loader/entries/osup-a+2-1.conf");
  CHECK(esp.list("/loader/entries") == std::vector<std::string>{"osup-a+2-1.conf", "osup-b.conf"});
  esp.rename("/loader/entries/osup-a+2-1.conf", "/loader/entries/osup-b.conf");  // over a file
  CHECK(esp.list("/loader/entries") == std::vector<std::string>{"osup-b.conf"});
  CHECK(esp.read("/loader/entries/osup-b.conf") == "replaced");

  test::write_random_file(e.dir / "kernel", 300000, 7);
  esp.copy_in(e.dir / "kernel", "/loader/vmlinuz");
  CHECK(esp.read("/loader/vmlinuz") == read_text_file(e.dir / "kernel"));

  esp.remove("/loader/entries/osup-b.conf");
  esp.remove("/loader/entries/osup-b.conf");  // missing is fine
  CHECK(esp.list("/loader/entries").empty());

  CHECK_THROWS_WITH(esp.read("relative"), Contains("not absolute"));
  CHECK_THROWS_WITH(esp.write_atomic("/loader/../x", "x"), Contains("'.' or '..' component"));
  CHECK_THROWS(esp.copy_in(e.dir / "no-such-file", "/x"));
  e.fsck();
}

TEST_CASE("ESP access reports what is wrong", "[unit]") {
  test::TempDir dir;
  CHECK_THROWS_WITH(open_mounted_esp(dir / "missing"), Contains("is not a directory"));
  CHECK_THROWS_WITH(open_image_esp(dir / "missing.img", 0), Contains("missing.img"));
  test::write_random_file(dir / "junk.img", 4 * kMiB, 1);
  auto esp = open_image_esp(dir / "junk.img", 0);
  CHECK_THROWS_WITH((void)esp->list("/"), Contains("is there a FAT file system at that offset?"));
  CHECK_THROWS_WITH(esp->write_atomic("/x", "x"), Contains("junk.img@@0"));
}

TEST_CASE("create_esp_image makes a checkable, reproducible FAT32 image", "[unit]") {
  TempDir dir;
  write_random_file(dir / "boot.efi", 300ull * 1024, 1);
  auto fill = [&](const std::string& image, const std::string& seed) {
    auto esp = create_esp_image(image, 40 * kMiB, seed);
    esp->mkdirs("/EFI/BOOT");
    esp->copy_in(dir / "boot.efi", "/EFI/BOOT/BOOTX64.EFI");
    esp->mkdirs("/loader/entries");
    esp->write_atomic("/loader/entries/osup-a.conf", "title osup\nlinux /a/vmlinuz\n");
  };
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  fill(dir / "esp1.img", "seed");
  fill(dir / "esp2.img", "seed");
  ::unsetenv("SOURCE_DATE_EPOCH");
  CHECK(sha256_file(dir / "esp1.img") == sha256_file(dir / "esp2.img"));

  CHECK(run({"fsck.vfat", "-n", dir / "esp1.img"}).exit_code == 0);
  CHECK(run_checked({"blkid", "-o", "value", "-s", "LABEL", dir / "esp1.img"}).out == "OSUP-ESP\n");
  CHECK(run_checked({"blkid", "-o", "value", "-s", "TYPE", dir / "esp1.img"}).out == "vfat\n");
  // Read back by the real mtools, not by our own reader.
  RunOptions o;
  o.env["MTOOLS_SKIP_CHECK"] = "1";
  CHECK(run_checked({"mtype", "-i", dir / "esp1.img", "::/loader/entries/osup-a.conf"}, o).out ==
        "title osup\nlinux /a/vmlinuz\n");
  run_checked({"mcopy", "-i", dir / "esp1.img", "::/EFI/BOOT/BOOTX64.EFI", dir / "back.efi"}, o);
  CHECK(sha256_file(dir / "back.efi") == sha256_file(dir / "boot.efi"));

  // Another seed, another volume ID.
  fill(dir / "esp3.img", "other");
  CHECK(run_checked({"blkid", "-o", "value", "-s", "UUID", dir / "esp3.img"}).out !=
        run_checked({"blkid", "-o", "value", "-s", "UUID", dir / "esp1.img"}).out);

  SECTION("errors") {
    CHECK_THROWS_WITH(create_esp_image(dir / "e.img", 8 * kMiB, ""),
                      Catch::StartsWith("esp size 8.0 MiB is too small for FAT32"));
    auto esp = create_esp_image(dir / "e.img", 40 * kMiB, "");
    CHECK_THROWS_WITH(esp->copy_in(dir / "nope.efi", "/BOOTX64.EFI"), Contains("nope.efi"));
    CHECK_THROWS_WITH(esp->write_atomic("loader.conf", "x"),
                      Contains("invalid ESP path 'loader.conf' (not absolute)"));
    CHECK_THROWS_WITH(esp->write_atomic("/loader//x", "x"), Contains("empty component"));
    write_random_file(dir / "big.bin", 41 * kMiB, 3);
    CHECK_THROWS_WITH(esp->copy_in(dir / "big.bin", "/big.bin"), Contains("/big.bin"));
  }
}
