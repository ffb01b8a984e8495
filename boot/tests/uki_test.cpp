// UKI assembly on Debian's real systemd-boot stubs of both arches, with binutils' objdump
// (the cross objdump for aarch64: the host one does not read pei-aarch64-little) as the
// oracle for section names, order, addresses and contents.
#include "boot/uki.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::test;
using Catch::Matchers::Contains;

namespace {

struct ObjdumpSection {
  std::string name;
  uint64_t size = 0, vma = 0, file_off = 0;
};

std::string objdump_for(Arch arch) {
  return arch == Arch::x86_64 ? "objdump" : "aarch64-linux-gnu-objdump";
}

// `objdump -h` rows: "Idx Name Size VMA LMA File-off Algn", then a flags line.
std::vector<ObjdumpSection> objdump_sections(Arch arch, const std::string& file) {
  const RunResult r = run_checked({objdump_for(arch), "-h", file});
  std::vector<ObjdumpSection> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    int idx = -1;
    ObjdumpSection s;
    std::string size, vma, lma, off;
    if (!(f >> idx >> s.name >> size >> vma >> lma >> off)) continue;
    s.size = std::stoull(size, nullptr, 16);
    s.vma = std::stoull(vma, nullptr, 16);
    s.file_off = std::stoull(off, nullptr, 16);
    out.push_back(s);
  }
  return out;
}

struct UkiFixture {
  TempDir d;
  Arch arch;
  UkiParts parts;
  explicit UkiFixture(Arch a) : arch(a) {
    extract_cached_deb("systemd-boot-efi", arch, d.path());
    write_random_file(d / "vmlinuz", 5 * 1024 * 1024 + 123, 1);
    write_random_file(d / "initrd", 3 * 1024 * 1024 + 7, 2);
    parts = {uki_stub_in_root(d.path(), arch), "PRETTY_NAME=\"demo 2.0 (slot b)\"\n",
             "quiet roothash=abc osup.slot=b", d / "vmlinuz", d / "initrd"};
  }
};

}  // namespace

TEST_CASE("assemble_uki appends .osrel .cmdline .linux .initrd as ukify lays them out", "[unit]") {
  const Arch arch = GENERATE(Arch::x86_64, Arch::aarch64);
  CAPTURE(arch_name(arch));
  UkiFixture f(arch);
  const std::string uki = f.d / "uki.efi";
  assemble_uki(f.parts, arch, uki);

  const std::string stub_bytes = read_text_file(f.parts.stub);
  const std::string uki_bytes = read_text_file(uki);
  const PeImage stub = read_pe(stub_bytes, "stub");
  const PeImage img = read_pe(uki_bytes, "uki");
  const auto before = objdump_sections(arch, f.parts.stub);
  const auto after = objdump_sections(arch, uki);
  REQUIRE(before.size() == stub.sections.size());
  REQUIRE(after.size() == before.size() + 4);

  // The stub's own sections are untouched, the new ones follow in order.
  for (size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].name == before[i].name);
    CHECK(after[i].vma == before[i].vma);
    CHECK(after[i].file_off == before[i].file_off);
  }
  const std::vector<std::pair<std::string, std::string>> want = {
      {".osrel", f.parts.osrel},
      {".cmdline", f.parts.cmdline},
      {".linux", read_text_file(f.parts.kernel)},
      {".initrd", read_text_file(f.parts.initrd)}};
  uint64_t end = 0;
  for (const auto& s : before) end = std::max(end, s.vma + s.size);
  for (size_t i = 0; i < want.size(); ++i) {
    const ObjdumpSection& s = after[before.size() + i];
    CAPTURE(s.name);
    CHECK(s.name == want[i].first);
    CHECK(s.size == want[i].second.size());
    // VMA: the next SectionAlignment boundary after the previous section (objdump adds
    // the image base, 0 for both stubs); raw data FileAlignment-aligned.
    const uint64_t align = stub.section_alignment;
    const uint64_t after_prev = i == 0 ? std::max<uint64_t>(end, stub.size_of_image) : end;
    CHECK(s.vma == (after_prev + align - 1) / align * align);
    CHECK(s.file_off % stub.file_alignment == 0);
    // No hole before it: right after the previous section's raw data.
    const ObjdumpSection& prev = after[before.size() + i - 1];
    const uint64_t fa = stub.file_alignment;
    CHECK(s.file_off == prev.file_off + (prev.size + fa - 1) / fa * fa);
    CHECK(uki_bytes.compare(s.file_off, s.size, want[i].second) == 0);
    end = s.vma + s.size;
  }
  CHECK(img.size_of_image % stub.section_alignment == 0);
  CHECK(img.size_of_image >= end);
  CHECK(img.checksum == pe_checksum(uki_bytes));
  // The stub's headers before the section table are the same bytes but for the
  // section count, image size, initialised-data size and checksum.
  CHECK(uki_bytes.compare(0, 0x3c, stub_bytes, 0, 0x3c) == 0);
}

TEST_CASE("pe_checksum agrees with the linker's checksum of the x86_64 stub", "[unit]") {
  UkiFixture f(Arch::x86_64);
  const std::string bytes = read_text_file(f.parts.stub);
  const PeImage stub = read_pe(bytes, "stub");
  REQUIRE(stub.checksum != 0);
  CHECK(pe_checksum(bytes) == stub.checksum);
}

TEST_CASE("assemble_uki refuses a stub of the other arch, a non-PE file and a UKI", "[unit]") {
  UkiFixture f(Arch::aarch64);
  const std::string uki = f.d / "uki.efi";
  CHECK_THROWS_WITH(assemble_uki(f.parts, Arch::x86_64, uki),
                    Contains(f.parts.stub) && Contains("is for aarch64, not x86_64"));
  CHECK_FALSE(fs::exists(uki));

  UkiParts not_pe = f.parts;
  not_pe.stub = f.parts.kernel;  // random bytes
  CHECK_THROWS_WITH(assemble_uki(not_pe, Arch::aarch64, uki), Contains("is not a PE image"));

  assemble_uki(f.parts, Arch::aarch64, uki);
  UkiParts again = f.parts;
  again.stub = uki;
  CHECK_THROWS_WITH(assemble_uki(again, Arch::aarch64, f.d / "uki2.efi"),
                    Contains("already has a .osrel section"));

  CHECK_THROWS_WITH(uki_stub_in_root(f.d / "nothing", Arch::aarch64),
                    Contains("linuxaa64.efi.stub") && Contains("systemd-boot-efi"));
}

TEST_CASE("uki_osrel names the slot and leaves the loader's sort fields out", "[unit]") {
  Manifest m;
  m.name = "demo";
  m.version = "2.0";
  const std::string osrel = uki_osrel(m, layout::Slot::b);
  CHECK(osrel == "PRETTY_NAME=\"demo 2.0 (slot b)\"\n");
}

TEST_CASE("Type #2 names order slots by generation under systemd-boot's sorting", "[unit]") {
  using layout::Slot;
  auto entry = [](const std::string& name) {
    auto e = uki_loader_entry(name);
    REQUIRE(e);
    return *e;
  };
  // Negative: `a` sorts (and boots) first, as config_entry_compare decides.
  auto first = [&](const std::string& a, const std::string& b) {
    return compare_loader_entries(entry(a), entry(b)) < 0;
  };
  CHECK(uki_entry_name(Slot::b, 7, 3) == "osup-7-b+3.efi");
  CHECK(uki_entry_name(Slot::a, 6) == "osup-6-a.efi");
  CHECK(uki_entry_name(Slot::b, 7, 0, 3) == "osup-7-b+0-3.efi");
  const LoaderEntry trial = entry("osup-7-b+2-1.efi");
  CHECK(trial.tries_left == 2);
  CHECK(trial.tries_done == 1);
  CHECK(entry("osup-6-a.efi").tries_left == -1);
  CHECK_FALSE(uki_loader_entry("osup-6-a.conf"));

  // A new slot on trial boots before the good one; exhausted, it goes last (fallback).
  CHECK(first(uki_entry_name(Slot::b, 7, 3), uki_entry_name(Slot::a, 6)));
  CHECK(first(uki_entry_name(Slot::a, 6), uki_entry_name(Slot::b, 7, 0, 3)));
  // Rollback renames the older slot to a higher generation; the letter does not matter.
  CHECK(first(uki_entry_name(Slot::a, 8), uki_entry_name(Slot::b, 7)));
  CHECK(first(uki_entry_name(Slot::b, 9), uki_entry_name(Slot::a, 8)));
  // Numbers compare as numbers (10 after 9), as strverscmp does and strcmp would not.
  CHECK(first(uki_entry_name(Slot::a, 10), uki_entry_name(Slot::b, 9)));
}
