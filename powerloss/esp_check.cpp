#include "powerloss/esp_check.h"

#include <algorithm>
#include <sstream>

#include "base/error.h"
#include "base/process.h"
#include "boot/slot_boot.h"
#include "boot/systemd_boot.h"
#include "boot/uki.h"
#include "format/sha256.h"
#include "updater/verify.h"

namespace osup::powerloss {

namespace {

// The value of "key value" lines of a Type #1 entry.
std::string entry_field(const std::string& content, const std::string& key) {
  std::istringstream in(content);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, key.size() + 1, key + " ") == 0) return line.substr(key.size() + 1);
  }
  return "";
}

// Entries the loader can boot, in its order (the pick first): Type #1 entries in
// /loader/entries and Type #2 entries (UKIs) in /EFI/Linux, as systemd_boot_pick sees them.
std::vector<BootEntry> bootable_entries(const EspAccess& esp,
                                        const std::optional<std::string>& picked) {
  std::vector<BootEntry> out;
  auto add = [&](BootEntry b) {
    if (picked && b.file == *picked)
      out.insert(out.begin(), std::move(b));
    else
      out.push_back(std::move(b));
  };
  for (const std::string& f : esp.list(kUkiDir)) {
    if (!uki_loader_entry(f)) continue;  // not *.efi (a copy's temp file): not an entry
    const auto name = parse_uki_entry_name(f);
    add(BootEntry{f, name ? std::optional(name->slot) : std::nullopt,
                  std::string(kUkiDir) + "/" + f, "", ""});
  }
  for (const std::string& f : esp.list(kEntriesDir)) {
    std::string id = f;
    std::transform(id.begin(), id.end(), id.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (!id.ends_with(".conf") || id.starts_with("auto-")) continue;  // the loader skips them
    std::optional<std::string> content;
    try {  // what the loader cannot read it skips, as systemd_boot_pick does
      content = esp.read(std::string(kEntriesDir) + "/" + f);
    } catch (const Error&) {
      continue;
    }
    if (!content) continue;
    auto e = parse_loader_entry(f, *content);
    if (!e || !esp.exists(e->linux_path)) continue;
    add(BootEntry{f, osup_entry_slot(e->id), e->linux_path, entry_field(*content, "initrd"),
                  entry_field(*content, "options")});
  }
  return out;
}

bool is_uki_entry(const BootEntry& e) {
  return e.linux_path.starts_with(std::string(kUkiDir) + "/");
}

// A Type #2 entry boots what it is: the file must be the manifest's signed UKI of the slot.
std::string uki_entry_error(const OsupDisk& disk, const BootEntry& e, layout::Slot s,
                            const Manifest& m) {
  if (!m.has_ukis()) return "entry " + e.file + " is a UKI but the slot's release has none";
  const Payload* want = m.find(slot_uki_kind(s));
  auto content = disk.esp_files->read(e.linux_path);
  if (!want || !content) return "the UKI " + e.linux_path + " is missing";
  if (to_hex(sha256(*content)) != want->sha256)
    return "the UKI " + e.linux_path + " does not match the manifest";
  return "";
}

// Why the ESP side of slot s cannot boot, or "" (then its manifest goes into m).
std::string slot_esp_error(const OsupDisk& disk, const sig::TrustStore& trust, const BootEntry& e,
                           layout::Slot s, Manifest& m) {
  try {
    m = verified_slot_manifest(disk, s, trust);
    if (is_uki_entry(e)) return uki_entry_error(disk, e, s, m);
    if (m.has_ukis()) return "entry " + e.file + " is Type #1 but the slot's release boots a UKI";
    const SlotEspPaths paths = slot_esp_paths(s);
    if (e.linux_path != paths.kernel) return "entry " + e.file + " boots " + e.linux_path;
    const Payload* initrd = m.find(PayloadKind::initrd);
    if (e.initrd != (initrd ? paths.initrd : ""))
      return "entry " + e.file + " names initrd '" + e.initrd + "'";
    if (e.options != slot_cmdline(m, s))
      return "entry " + e.file + " has other options than the manifest's";
    for (const PayloadKind kind : {PayloadKind::kernel, PayloadKind::initrd}) {
      const Payload* p = m.find(kind);
      if (!p) continue;
      auto content =
          disk.esp_files->read(kind == PayloadKind::kernel ? paths.kernel : paths.initrd);
      if (!content) return to_string(kind) + " is missing";
      if (to_hex(sha256(*content)) != p->sha256)
        return to_string(kind) + " does not match the manifest";
    }
  } catch (const Error& err) {
    return err.what();
  }
  return "";
}

}  // namespace

std::map<std::string, std::string> loader_files(const EspAccess& esp) {
  std::map<std::string, std::string> out;
  for (const char* dir : {"/EFI/BOOT", "/EFI/systemd"})
    for (const std::string& f : esp.list(dir))
      if (auto c = esp.read(std::string(dir) + "/" + f)) out[std::string(dir) + "/" + f] = *c;
  if (auto c = esp.read(kLoaderConf)) out[kLoaderConf] = *c;
  return out;
}

EspVerdict examine_esp(const OsupDisk& disk, const sig::TrustStore& trust,
                       const std::map<std::string, std::string>& base_loader_files) {
  EspVerdict v;
  try {
    v.picked = systemd_boot_pick(*disk.esp_files);
    v.bootable = bootable_entries(*disk.esp_files, v.picked);
    for (const auto& [path, content] : base_loader_files) {
      auto now = disk.esp_files->read(path);
      if (!now || *now != content) v.failures.push_back(path + " differs from the base's");
    }
  } catch (const Error& e) {
    v.failures.push_back(std::string("reading the ESP: ") + e.what());
    return v;
  }
  if (!v.picked) v.failures.emplace_back("systemd-boot finds no entry to boot");
  for (const BootEntry& e : v.bootable) {
    if (!e.slot) {
      v.failures.push_back("entry " + e.file + " is bootable but no osup slot's");
      continue;
    }
    if (v.slot_errors.contains(*e.slot) || v.manifests.contains(*e.slot)) continue;
    Manifest m;
    std::string err = slot_esp_error(disk, trust, e, *e.slot, m);
    if (err.empty())
      v.manifests[*e.slot] = std::move(m);
    else
      v.slot_errors[*e.slot] = std::move(err);
  }
  return v;
}

std::string fsck_vfat_error(const std::string& image) {
  RunResult r = run({"fsck.vfat", "-n", image});
  if (r.exit_code == 0) return "";
  std::string problems;
  std::istringstream in(r.out + r.err);
  for (std::string line; std::getline(in, line);) {
    // The banner, the file count, and the dirty bit with its consequences.
    if (line.empty() || line.starts_with("fsck.fat ") ||
        line.find(" files, ") != std::string::npos ||
        line.find("Dirty bit is set") != std::string::npos ||
        line.find("dirty bit") != std::string::npos ||
        line.find("Leaving file system unchanged") != std::string::npos ||
        line.starts_with(" Automatically removing"))
      continue;
    problems += (problems.empty() ? "" : "; ") + line;
  }
  return problems.empty() ? "" : "fsck.vfat -n: " + problems;
}

}  // namespace osup::powerloss
