// Boot control: which slot the boot loader starts next, and how many tries a new slot
// gets before the loader passes it over (docs/design.md "Boot selection with systemd-boot").
// One small interface, one backend per loader, a fake for tests, chosen in one place
// (after update_engine's BootControlInterface and RAUC's bootchooser).
//
// A switch to slot S is: disable(S) -> write S's partitions and kernel -> install(S, spec).
// Every mutating call is a single atomic file replacement or rename on the ESP, so a
// power cut between calls leaves the previous, complete boot configuration.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "boot/esp_access.h"
#include "format/disk_layout.h"

namespace osup {

enum class SlotState {
  empty,   // no boot entry: never booted (being written, or never installed)
  good,    // proved itself: boots without counting
  trying,  // newly installed: boots while tries_left > 0
  bad,     // tries exhausted or marked bad: the loader passes it over
};
[[nodiscard]] const char* to_string(SlotState s);

struct SlotBoot {
  layout::Slot slot = layout::Slot::a;
  SlotState state = SlotState::empty;
  int tries_left = 0, tries_done = 0;
  uint64_t generation = 0;  // raised by install/make_first; the newest one boots first
  std::string title;        // as the boot menu shows it: entry_title()
  std::string version;      // OS version
};

struct EntrySpec {
  std::string title;    // "minimal 1.2.0 (slot b)" (slot_title), or just the OS name, to
                        // which the backends add " <version> (slot b)"
  std::string version;  // OS version
  std::string kernel;   // ESP path, e.g. /osup/a/vmlinuz
  std::string initrd;   // ESP path, may be ""
  std::string cmdline;  // osup.slot=<slot> is appended unless present (slot_cmdline has it)
  int tries = 3;
  std::string uki;  // host file: the slot's signed UKI; only the Type #2 backend
                    // (systemd_boot_uki.h) reads it, and then kernel/initrd/cmdline are unused
};

class BootControl {
 public:
  virtual ~BootControl();

  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual SlotBoot slot(layout::Slot) const = 0;
  // What the loader itself will pick at the next boot (nullopt: nothing bootable).
  [[nodiscard]] virtual std::optional<layout::Slot> next_boot() const = 0;
  // Step 1 of a switch: remove the slot's entry so nothing boots it while its
  // partitions and kernel are rewritten. An absent entry is fine.
  virtual void disable(layout::Slot) = 0;
  // Last step of a switch: write the slot's entry with spec.tries tries, ordered
  // before the other slot.
  virtual void install(layout::Slot, const EntrySpec&) = 0;
  // Rollback: order this slot first WITHOUT tries - it already proved itself, or the
  // caller forces it (rollback --force to a bad slot) - so its state becomes good.
  // Throws if it has no entry.
  virtual void make_first(layout::Slot) = 0;
  // trying -> good (a good slot stays good). Throws if it has no entry.
  virtual void mark_good(layout::Slot) = 0;
  // -> bad: the loader passes it over. Throws if it has no entry.
  virtual void mark_bad(layout::Slot) = 0;
};

// The one place a backend is chosen: "systemd-boot" | "systemd-boot-uki" | "grub" | "auto"
// (grub when /grub/grubenv or /EFI/*/grubenv exists on the ESP, else systemd-boot-uki when
// /EFI/Linux holds osup's UKIs, else systemd-boot).
[[nodiscard]] std::unique_ptr<BootControl> make_boot_control(const std::string& kind,
                                                             std::shared_ptr<EspAccess> esp);

// Helpers shared by the backends.
// Throws unless title and kernel are set, paths absolute, no line breaks, tries >= 1.
void check_entry_spec(const EntrySpec& spec);
// The menu title: spec.title if it already ends in "(slot x)", else
// "<title> <version> (slot x)".
[[nodiscard]] std::string entry_title(const EntrySpec& spec, layout::Slot s);
// spec.cmdline with "osup.slot=x" appended unless present; throws when it names the
// other slot.
[[nodiscard]] std::string entry_cmdline(const EntrySpec& spec, layout::Slot s);

}  // namespace osup
