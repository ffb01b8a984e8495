// systemd-boot backend: one Boot Loader Specification Type #1 entry per slot in
// /loader/entries, boot counting in the file name, slot order through the loader's own
// sorting (docs/design.md "Boot selection with systemd-boot").
//
// What systemd-boot 252 does (read in src/boot/efi/boot.c and
// src/fundamental/string-util-fundamental.c of that release):
// - Entries: every /loader/entries/*.conf not starting with "auto-" whose `linux` (or
//   `efi`) file exists on the ESP. The entry id is the whole file name, lowercased,
//   counter included ("osup-a+2-1.conf").
// - Counter (config_entry_parse_tries): the LAST '+' in the name, then LEFT, optionally
//   "-DONE", then exactly ".conf". Without it tries_left is -1 (not counted). When the
//   entry is booted (config_entry_bump_counters) the file is renamed to
//   "+max(LEFT-1,0)-(DONE+1)" - an exhausted "+0-N" entry that still boots becomes +0-(N+1).
// - Sorting (config_entry_compare): (1) entries with tries_left == 0 last; (2) entries
//   with sort-key before those without; with sort-keys on both: sort-key ascending
//   (strcmp), machine-id ascending, then `version` DESCENDING by strverscmp_improved;
//   (3) id descending by strverscmp_improved; (4) more tries_left first; (5) fewer
//   tries_done first.
// - Default (config_default_entry_select): the LoaderEntryOneShot EFI variable, then
//   LoaderEntryDefault (or the saved entry), then loader.conf `default` - each a glob
//   (efi_fnmatch) matched against ids in SORTED order, first match wins - else the first
//   entry. osup never sets those EFI variables (`bootctl set-default` would pin an entry
//   and break the rollback; the loader reads them, we cannot see them offline).
// So with `default osup-*` the osup entry with the highest version boots unless its
// tries are exhausted, and pinning one entry would boot it even when exhausted - the
// design below therefore orders slots only by `version` = a generation number.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "boot/boot_control.h"

namespace osup {

// systemd's version comparison (negative, 0, positive like strcmp), rewritten from its
// documented rules: segments of digits (numeric) or letters, '~' oldest, then '-', '^', '.'.
[[nodiscard]] int strverscmp_improved(std::string_view a, std::string_view b);

// One Type #1 entry as systemd-boot sees it.
struct LoaderEntry {
  std::string file;  // name in /loader/entries
  std::string id;    // file, lowercased
  std::string title, sort_key, version, machine_id, linux_path;
  int tries_left = -1, tries_done = -1;  // -1: no boot counting
};
// Parses an entry file like the loader does; nullopt when the loader ignores it
// (not *.conf, "auto-*", no linux/efi line).
[[nodiscard]] std::optional<LoaderEntry> parse_loader_entry(const std::string& file,
                                                            std::string_view content);
// config_entry_compare: negative when a sorts (and boots) before b.
[[nodiscard]] int compare_loader_entries(const LoaderEntry& a, const LoaderEntry& b);
// The entry systemd-boot boots next without user input (file name), or nullopt. Type #1
// entries in /loader/entries and Type #2 entries (UKIs) in /EFI/Linux alike.
[[nodiscard]] std::optional<std::string> systemd_boot_pick(const EspAccess& esp);
// What the loader does at boot: pick, then bump the picked entry's counter by renaming
// it. Returns the picked entry's new file name. For tests and offline simulation.
std::optional<std::string> simulate_systemd_boot(EspAccess& esp);

// The loader.conf osup needs: `default osup-*`, `timeout 0`. The builder writes it too.
// With `uki` (a Secure Boot disk) the default is `osup-*.efi`: only Type #2 entries. A
// Type #1 entry dropped on the ESP (sort-key osup, so sorted before every UKI) is then
// never the default; under Secure Boot its kernel would fail to load, and 252 then returns
// to the firmware instead of trying the next entry (boot.c efi_main), stopping the boot.
[[nodiscard]] std::string loader_conf(bool uki = false);

// Which slot an osup entry file belongs to ("osup-b+2-1.conf", "osup-a~1.conf"), or nullopt.
[[nodiscard]] std::optional<layout::Slot> osup_entry_slot(const std::string& file);

// Entry files: "<stem>.conf" (good), "<stem>+<left>[-<done>].conf" (trying; +0-N is
// exhausted = bad), where a slot's stem alternates between "osup-<slot>" and
// "osup-<slot>~1": a new entry never replaces the old one by a rename over it. Fields: title "<OS>
// <version> (slot a)", sort-key osup, version <generation>, linux, initrd, options "<cmdline>
// osup.slot=a", plus the comment
// "# osup-version <OS version>" that SlotBoot reads back.
class SystemdBoot final : public BootControl {
 public:
  explicit SystemdBoot(std::shared_ptr<EspAccess> esp) : esp_(std::move(esp)) {}

  [[nodiscard]] std::string name() const override { return "systemd-boot"; }
  [[nodiscard]] SlotBoot slot(layout::Slot) const override;
  [[nodiscard]] std::optional<layout::Slot> next_boot() const override;
  void disable(layout::Slot) override;
  void install(layout::Slot, const EntrySpec&) override;
  void make_first(layout::Slot) override;
  void mark_good(layout::Slot) override;
  void mark_bad(layout::Slot) override;

  // The slot's current entry file name (the first one the loader sorts, if a crash left
  // two), or nullopt.
  [[nodiscard]] std::optional<std::string> entry_file(layout::Slot) const;

 private:
  [[nodiscard]] std::string require_entry(layout::Slot, const char* action) const;
  [[nodiscard]] uint64_t next_generation() const;
  // Writes the slot's entry under the stem its current one does not use, then removes
  // the old one; tries < 0: a good (uncounted) entry.
  void replace_entry(layout::Slot, const std::string& text, int tries);
  void drop_entries_except(layout::Slot, const std::string& keep);
  void rename_entry(layout::Slot, const std::string& from, const std::string& to);
  std::shared_ptr<EspAccess> esp_;
};

inline constexpr const char* kEntriesDir = "/loader/entries";
inline constexpr const char* kLoaderConf = "/loader/loader.conf";
// Type #2 entries (UKIs): systemd-boot lists every *.efi here as one entry.
inline constexpr const char* kUkiDir = "/EFI/Linux";

}  // namespace osup
