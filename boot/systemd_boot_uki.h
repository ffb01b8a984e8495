// systemd-boot with Type #2 entries: on a Secure Boot image each slot boots one signed
// Unified Kernel Image in /EFI/Linux, and nothing unsigned (kernel, initrd, command line)
// is on the ESP for it (docs/design.md "Verified boot").
//
// The entry IS the signed file, so nothing inside it can change after the build. What
// systemd-boot 252 reads from it for ordering is fixed (our .osrel has no IMAGE_ID or
// version, boot/uki.h), which leaves the file name: "osup-<generation>-<slot>[+L[-D]].efi"
// (uki_entry_name). The loader orders such entries by id, descending strverscmp, after
// putting exhausted ones (+0-N) last, so the higher generation boots first; boot counting
// is systemd's, in the name, exactly as for Type #1 entries. install, make_first, mark_good
// and mark_bad therefore only rename, and every new name is one that does not exist yet:
// a new generation or a new counter. Nothing is ever renamed over an existing file (FAT
// has no atomic replace; a crash there can leave neither name).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "boot/boot_control.h"

namespace osup {

inline constexpr const char* kSystemdBootUki = "systemd-boot-uki";

// Whether the ESP holds any of osup's Type #2 entries (make_boot_control's "auto").
[[nodiscard]] bool has_uki_entries(const EspAccess& esp);

// SlotBoot title and version come from the slot's kept manifest (/osup/<slot>/manifest.json),
// which is what the UKI's .osrel PRETTY_NAME was made from (slot_title).
class SystemdBootUki final : public BootControl {
 public:
  explicit SystemdBootUki(std::shared_ptr<EspAccess> esp) : esp_(std::move(esp)) {}

  [[nodiscard]] std::string name() const override { return kSystemdBootUki; }
  [[nodiscard]] SlotBoot slot(layout::Slot) const override;
  [[nodiscard]] std::optional<layout::Slot> next_boot() const override;
  void disable(layout::Slot) override;
  // Copies spec.uki (a host file: the slot's signed UKI) to /EFI/Linux as
  // "osup-<next generation>-<slot>+<tries>.efi", then removes the slot's older entries.
  void install(layout::Slot, const EntrySpec&) override;
  void make_first(layout::Slot) override;
  void mark_good(layout::Slot) override;
  void mark_bad(layout::Slot) override;

  // The slot's current UKI file name in /EFI/Linux (the one the loader sorts first, if a
  // crash left two), or nullopt.
  [[nodiscard]] std::optional<std::string> entry_file(layout::Slot) const;

 private:
  [[nodiscard]] std::string require_entry(layout::Slot, const char* action) const;
  [[nodiscard]] uint64_t next_generation() const;
  void rename_to_new(const std::string& from, const std::string& to);
  std::shared_ptr<EspAccess> esp_;
};

}  // namespace osup
