// Unified Kernel Images: systemd's EFI stub with the kernel, initrd, command line and
// os-release added as PE sections, so that one signature (boot/secure_boot in the
// builder) covers everything the firmware hands to Linux, the root hash included.
//
// The sections are written into the PE file here rather than with objcopy: Debian 12's
// host binutils (x86_64) reads pei-x86-64 only, not the aarch64 stub (pei-aarch64-little
// needs the cross binutils), and objcopy's --change-section-vma needs addresses picked
// by hand. What we do is what ukify does: each section goes at the next SectionAlignment
// boundary after the image's last section, its raw data at the next FileAlignment
// boundary right after the last section's (a trailing COFF symbol table, which Debian's
// x86_64 stub has, is dropped so no hole is left); the header's section count, SizeOfImage,
// SizeOfInitializedData and CheckSum follow. The stub must leave room in its headers for
// the new section headers (systemd's stubs do), and must not be signed yet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/arch.h"
#include "boot/systemd_boot.h"
#include "format/disk_layout.h"
#include "format/manifest.h"

namespace osup {

// One section header of a PE image, as the file holds it.
struct PeSection {
  std::string name;
  uint32_t virtual_size = 0, virtual_address = 0, raw_size = 0, raw_offset = 0;
};

struct PeImage {
  Arch arch = Arch::x86_64;
  uint32_t section_alignment = 0, file_alignment = 0, size_of_image = 0, size_of_headers = 0;
  uint32_t checksum = 0;
  std::vector<PeSection> sections;
};

// Reads a PE32+ EFI image's headers; throws naming `what` when it is not one (or is
// for neither of our architectures).
[[nodiscard]] PeImage read_pe(const std::string& bytes, const std::string& what);

// The PE checksum (the Windows loader's algorithm: 16-bit one's-complement sum of the file
// with the CheckSum field taken as 0, plus the file length).
[[nodiscard]] uint32_t pe_checksum(const std::string& bytes);

struct UkiParts {
  std::string stub;     // host file: linuxx64.efi.stub / linuxaa64.efi.stub
  std::string osrel;    // .osrel content
  std::string cmdline;  // .cmdline content (the complete kernel command line)
  std::string kernel;   // host file for .linux
  std::string initrd;   // host file for .initrd, or "" for none
};

// Writes the UKI to `out` (replaced): the stub with .osrel, .cmdline, .linux and .initrd
// appended in that order. Checks the stub's architecture against `arch` and that it has
// none of those sections already. Unsigned.
void assemble_uki(const UkiParts& parts, Arch arch, const std::string& out);

// The stub inside an image's root: ROOT/usr/lib/systemd/boot/efi/linux{x64,aa64}.efi.stub.
// Throws naming the path and the Debian package (systemd-boot-efi) when it is missing.
[[nodiscard]] std::string uki_stub_in_root(const std::string& root, Arch arch);

// The .osrel of a slot's UKI. Only PRETTY_NAME ("minimal 2.0.0 (slot b)"): systemd-boot
// 252 takes a Type #2 entry's sort key from IMAGE_ID/ID and its version from
// IMAGE_VERSION/VERSION*, which a signed file cannot change; leaving them out makes the
// loader order the entries by file name, which osup can rename (docs/design.md).
[[nodiscard]] std::string uki_osrel(const Manifest& m, layout::Slot s);

// Type #2 entry names (docs/design.md "Verified boot"; boot/systemd_boot_uki.h): the generation
// goes before the slot letter so that the loader's id order (strverscmp, descending) is the
// generation order, and the boot counter is systemd's "+LEFT[-DONE]" before ".efi":
// "osup-7-b+3.efi", "osup-6-a.efi" (good), "osup-7-b+0-3.efi" (exhausted).
[[nodiscard]] std::string uki_entry_name(layout::Slot s, uint64_t generation, int tries_left = -1,
                                         int tries_done = 0);
// What osup's own Type #2 names say (the inverse of uki_entry_name); nullopt for any other
// file. Case-insensitive, as FAT and the loader are.
struct UkiEntryName {
  layout::Slot slot = layout::Slot::a;
  uint64_t generation = 0;
  int tries_left = -1, tries_done = 0;  // -1: no counter (a good entry)
};
[[nodiscard]] std::optional<UkiEntryName> parse_uki_entry_name(const std::string& file);
// The entry as systemd-boot 252 sees a UKI of ours in /EFI/Linux: id = lowercased file
// name, no sort key or version (our .osrel has neither), counter from the name; nullopt
// when the name is not a .efi file.
[[nodiscard]] std::optional<LoaderEntry> uki_loader_entry(const std::string& file);

}  // namespace osup
