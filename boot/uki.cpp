#include "boot/uki.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "boot/slot_boot.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

constexpr uint16_t kMachineX64 = 0x8664, kMachineArm64 = 0xaa64;
constexpr uint16_t kPe32PlusMagic = 0x20b;
constexpr size_t kSectionHeaderSize = 40;
// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ: what ukify gives its sections.
constexpr uint32_t kDataReadOnly = 0x40000040;

// Offsets inside the PE32+ optional header.
constexpr size_t kOptSizeOfInitData = 8, kOptSectionAlign = 32, kOptFileAlign = 36,
                 kOptSizeOfImage = 56, kOptSizeOfHeaders = 60, kOptCheckSum = 64, kOptNumDirs = 108,
                 kOptDirs = 112;
constexpr size_t kSecurityDir = 4;

uint16_t get16(const std::string& b, size_t off) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[off]) | static_cast<uint8_t>(b[off + 1])
                                                                  << 8);
}
uint32_t get32(const std::string& b, size_t off) {
  return get16(b, off) | static_cast<uint32_t>(get16(b, off + 2)) << 16;
}
void put16(std::string& b, size_t off, uint16_t v) {
  b[off] = static_cast<char>(v & 0xff);
  b[off + 1] = static_cast<char>(v >> 8);
}
void put32(std::string& b, size_t off, uint32_t v) {
  put16(b, off, static_cast<uint16_t>(v & 0xffff));
  put16(b, off + 2, static_cast<uint16_t>(v >> 16));
}
uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + what + " " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Where the headers are; all offsets checked against the file size.
struct PeLayout {
  size_t coff = 0, opt = 0, table = 0;
  uint16_t nsections = 0;
};

PeLayout locate(const std::string& b, const std::string& what) {
  auto need = [&](size_t end) {
    if (end > b.size()) fail(what + " is not a PE image (truncated headers)");
  };
  need(0x40);
  if (b.compare(0, 2, "MZ") != 0) fail(what + " is not a PE image (no MZ header)");
  PeLayout l;
  const size_t pe = get32(b, 0x3c);
  need(pe + 24);
  if (b.compare(pe, 4, std::string("PE\0\0", 4)) != 0)
    fail(what + " is not a PE image (no PE signature)");
  l.coff = pe + 4;
  l.nsections = get16(b, l.coff + 2);
  const uint16_t opt_size = get16(b, l.coff + 16);
  l.opt = l.coff + 20;
  need(l.opt + std::max<size_t>(opt_size, kOptDirs));
  if (get16(b, l.opt) != kPe32PlusMagic) fail(what + " is not a PE32+ image");
  l.table = l.opt + opt_size;
  need(l.table + size_t{l.nsections} * kSectionHeaderSize);
  return l;
}

void append_section(std::string& b, PeImage& img, const PeLayout& l, size_t index,
                    const std::string& name, const std::string& data) {
  uint64_t end_va = img.size_of_image;
  for (const PeSection& s : img.sections)
    end_va = std::max<uint64_t>(end_va, uint64_t{s.virtual_address} + s.virtual_size);
  PeSection s;
  s.name = name;
  s.virtual_address = static_cast<uint32_t>(round_up(end_va, img.section_alignment));
  s.virtual_size = static_cast<uint32_t>(data.size());
  s.raw_offset = static_cast<uint32_t>(round_up(b.size(), img.file_alignment));
  s.raw_size = static_cast<uint32_t>(round_up(data.size(), img.file_alignment));
  if (uint64_t{s.virtual_address} + s.raw_size > UINT32_MAX ||
      uint64_t{s.raw_offset} + s.raw_size > UINT32_MAX)
    fail("section " + name + " (" + std::to_string(data.size()) +
         " bytes) does not fit a PE image's 4 GiB");
  b.resize(s.raw_offset, '\0');
  b += data;
  b.resize(s.raw_offset + s.raw_size, '\0');

  const size_t h = l.table + index * kSectionHeaderSize;
  std::memset(b.data() + h, 0, kSectionHeaderSize);
  std::memcpy(b.data() + h, name.data(), std::min<size_t>(name.size(), 8));
  put32(b, h + 8, s.virtual_size);
  put32(b, h + 12, s.virtual_address);
  put32(b, h + 16, s.raw_size);
  put32(b, h + 20, s.raw_offset);
  put32(b, h + 36, kDataReadOnly);
  img.size_of_image = static_cast<uint32_t>(
      round_up(uint64_t{s.virtual_address} + s.virtual_size, img.section_alignment));
  put32(b, l.opt + kOptSizeOfImage, img.size_of_image);
  put32(b, l.opt + kOptSizeOfInitData, get32(b, l.opt + kOptSizeOfInitData) + s.raw_size);
  img.sections.push_back(s);
}

}  // namespace

PeImage read_pe(const std::string& b, const std::string& what) {
  const PeLayout l = locate(b, what);
  PeImage img;
  const uint16_t machine = get16(b, l.coff);
  if (machine == kMachineX64)
    img.arch = Arch::x86_64;
  else if (machine == kMachineArm64)
    img.arch = Arch::aarch64;
  else
    fail(what + " is a PE image for machine 0x" + std::to_string(machine) +
         ", neither x86_64 nor aarch64");
  img.section_alignment = get32(b, l.opt + kOptSectionAlign);
  img.file_alignment = get32(b, l.opt + kOptFileAlign);
  img.size_of_image = get32(b, l.opt + kOptSizeOfImage);
  img.size_of_headers = get32(b, l.opt + kOptSizeOfHeaders);
  img.checksum = get32(b, l.opt + kOptCheckSum);
  auto power_of_two = [](uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (!power_of_two(img.section_alignment) || !power_of_two(img.file_alignment))
    fail(what + " has invalid section or file alignment");
  for (size_t i = 0; i < l.nsections; ++i) {
    const size_t h = l.table + i * kSectionHeaderSize;
    PeSection s;
    s.name = std::string(b.data() + h, strnlen(b.data() + h, 8));
    s.virtual_size = get32(b, h + 8);
    s.virtual_address = get32(b, h + 12);
    s.raw_size = get32(b, h + 16);
    s.raw_offset = get32(b, h + 20);
    img.sections.push_back(s);
  }
  return img;
}

uint32_t pe_checksum(const std::string& b) {
  const size_t skip = locate(b, "PE image").opt + kOptCheckSum;
  uint64_t sum = 0;
  for (size_t i = 0; i < b.size(); i += 2) {
    if (i == skip || i == skip + 2) continue;
    uint16_t w = static_cast<uint8_t>(b[i]);
    if (i + 1 < b.size()) w = static_cast<uint16_t>(w | static_cast<uint8_t>(b[i + 1]) << 8);
    sum += w;
    sum = (sum & 0xffff) + (sum >> 16);
  }
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum + b.size());
}

void assemble_uki(const UkiParts& p, Arch arch, const std::string& out) {
  const std::string what = "EFI stub " + p.stub;
  std::string b = read_file(p.stub, "EFI stub");
  PeLayout l = locate(b, what);
  PeImage img = read_pe(b, what);
  if (img.arch != arch)
    fail(what + " is for " + arch_name(img.arch) + ", not " + arch_name(arch) +
         "; take the stub from the image's own root");
  const size_t security_size = l.opt + kOptDirs + kSecurityDir * 8 + 4;
  if (get32(b, l.opt + kOptNumDirs) > kSecurityDir && security_size + 4 <= l.table &&
      get32(b, security_size) != 0)
    fail(what + " is already signed; use the unsigned stub from systemd-boot-efi");
  std::vector<std::pair<std::string, std::string>> sections = {
      {".osrel", p.osrel}, {".cmdline", p.cmdline}, {".linux", read_file(p.kernel, "kernel")}};
  if (!p.initrd.empty()) sections.emplace_back(".initrd", read_file(p.initrd, "initrd"));
  for (const PeSection& s : img.sections)
    for (const auto& [name, data] : sections)
      if (s.name == name) fail(what + " already has a " + name + " section; is it a UKI?");
  // The new headers go in the space between the section table and the first section's
  // data; nothing may move, or the stub's own relocations would point wrong.
  uint64_t first_raw = img.size_of_headers;
  for (const PeSection& s : img.sections)
    if (s.raw_size > 0) first_raw = std::min<uint64_t>(first_raw, s.raw_offset);
  const uint64_t table_end = l.table + (img.sections.size() + sections.size()) * kSectionHeaderSize;
  if (table_end > first_raw)
    fail(what + " has no room for " + std::to_string(sections.size()) +
         " more section headers; use systemd's stub from systemd-boot-efi");
  // Whatever follows the last section goes: Debian's x86_64 stub ends in a COFF symbol
  // table, which no EFI loader reads (we unlink it from the header, as strip would).
  // Sections appended after it would leave a hole between sections, which Authenticode
  // does not hash and sbsign warns may hash differently elsewhere.
  uint64_t data_end = first_raw;
  for (const PeSection& s : img.sections)
    data_end = std::max<uint64_t>(data_end, uint64_t{s.raw_offset} + s.raw_size);
  if (const uint32_t symbols = get32(b, l.coff + 8); symbols != 0) {
    if (symbols < data_end) fail(what + " has a COFF symbol table inside its sections");
    put32(b, l.coff + 8, 0);
    put32(b, l.coff + 12, 0);
  }
  if (data_end < b.size()) b.resize(data_end);
  size_t index = img.sections.size();
  for (const auto& [name, data] : sections) append_section(b, img, l, index++, name, data);
  put16(b, l.coff + 2, static_cast<uint16_t>(img.sections.size()));
  put32(b, l.opt + kOptCheckSum, pe_checksum(b));

  const std::string tmp = out + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o.write(b.data(), static_cast<std::streamsize>(b.size()));
    if (!o.flush()) fail("cannot write the UKI " + tmp);
  }
  fs::rename(tmp, out);
}

std::string uki_stub_in_root(const std::string& root, Arch arch) {
  std::string path = root + "/usr/lib/systemd/boot/efi/linux" + efi_arch_suffix(arch) + ".efi.stub";
  if (!fs::is_regular_file(path))
    fail("the image has no EFI stub at " + path +
         "; add the Debian package systemd-boot-efi to the image");
  return path;
}

std::string uki_osrel(const Manifest& m, layout::Slot s) {
  return "PRETTY_NAME=\"" + slot_title(m, s) + "\"\n";
}

std::string uki_entry_name(layout::Slot s, uint64_t generation, int tries_left, int tries_done) {
  std::string n = "osup-" + std::to_string(generation) + "-" + layout::slot_char(s);
  if (tries_left >= 0)
    n += "+" + std::to_string(tries_left) +
         (tries_done > 0 ? "-" + std::to_string(tries_done) : std::string());
  return n + ".efi";
}

std::optional<UkiEntryName> parse_uki_entry_name(const std::string& file) {
  auto e = uki_loader_entry(file);
  if (!e || !e->id.starts_with("osup-")) return std::nullopt;
  // "osup-" GEN "-" SLOT, then ".efi" or "+" and the counter uki_loader_entry parsed.
  const std::string& id = e->id;
  size_t pos = 5;
  const size_t digits_end = id.find_first_not_of("0123456789", pos);
  if (digits_end == pos || digits_end == std::string::npos || digits_end - pos > 18 ||
      id[digits_end] != '-' || digits_end + 2 >= id.size())
    return std::nullopt;
  const char c = id[digits_end + 1];
  if (c != 'a' && c != 'b') return std::nullopt;
  const std::string rest = id.substr(digits_end + 2);
  if (rest != ".efi" && (rest[0] != '+' || e->tries_left < 0)) return std::nullopt;
  UkiEntryName n;
  n.slot = c == 'a' ? layout::Slot::a : layout::Slot::b;
  n.generation = std::stoull(id.substr(pos, digits_end - pos));
  n.tries_left = e->tries_left;
  n.tries_done = e->tries_left < 0 ? 0 : e->tries_done;
  return n;
}

std::optional<LoaderEntry> uki_loader_entry(const std::string& file) {
  LoaderEntry e;
  e.file = file;
  e.id = file;
  for (char& c : e.id)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!e.id.ends_with(".efi") || e.id.starts_with(".") || e.id.starts_with("auto-"))
    return std::nullopt;
  e.linux_path = "/EFI/Linux/" + file;
  // config_entry_parse_tries with the ".efi" suffix: the last '+', LEFT, optional -DONE.
  const size_t plus = e.id.rfind('+');
  if (plus == std::string::npos) return e;
  const std::string counter = e.id.substr(plus + 1, e.id.size() - 4 - plus - 1);
  const size_t dash = counter.find('-');
  auto number = [](const std::string& t) {
    return !t.empty() && t.size() < 10 && t.find_first_not_of("0123456789") == std::string::npos;
  };
  const std::string left = counter.substr(0, dash);
  const std::string done = dash == std::string::npos ? "0" : counter.substr(dash + 1);
  if (!number(left) || !number(done)) return e;
  e.tries_left = std::stoi(left);
  e.tries_done = std::stoi(done);
  return e;
}

}  // namespace osup
