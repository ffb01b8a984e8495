#include "boot/systemd_boot_uki.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "boot/slot_boot.h"
#include "boot/systemd_boot.h"
#include "boot/uki.h"

namespace osup {
namespace {

std::string uki_path(const std::string& file) { return std::string(kUkiDir) + "/" + file; }

// The slot's UKIs as the loader sorts them (a crash between the steps of install can leave
// two; the first is the one that boots).
std::vector<std::string> slot_files(const EspAccess& esp, layout::Slot s) {
  std::vector<LoaderEntry> entries;
  for (const std::string& f : esp.list(kUkiDir)) {
    auto n = parse_uki_entry_name(f);
    if (!n || n->slot != s) continue;
    if (auto e = uki_loader_entry(f)) entries.push_back(std::move(*e));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const LoaderEntry& a, const LoaderEntry& b) {
    return compare_loader_entries(a, b) < 0;
  });
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const LoaderEntry& e : entries) out.push_back(e.file);
  return out;
}

}  // namespace

bool has_uki_entries(const EspAccess& esp) {
  const auto files = esp.list(kUkiDir);
  return std::any_of(files.begin(), files.end(),
                     [](const std::string& f) { return parse_uki_entry_name(f).has_value(); });
}

std::optional<std::string> SystemdBootUki::entry_file(layout::Slot s) const {
  auto files = slot_files(*esp_, s);
  if (files.empty()) return std::nullopt;
  return files.front();
}

SlotBoot SystemdBootUki::slot(layout::Slot s) const {
  SlotBoot b;
  b.slot = s;
  auto file = entry_file(s);
  if (!file) return b;
  const UkiEntryName n = *parse_uki_entry_name(*file);
  if (n.tries_left < 0) {
    b.state = SlotState::good;
  } else {
    b.state = n.tries_left > 0 ? SlotState::trying : SlotState::bad;
    b.tries_left = n.tries_left;
    b.tries_done = n.tries_done;
  }
  b.generation = n.generation;
  // The kept manifest names the version; status shows an unreadable one as unknown
  // (osup verify says what is wrong with it).
  if (auto text = esp_->read(slot_esp_paths(s).manifest)) try {
      const Manifest m = Manifest::parse(*text);
      b.title = slot_title(m, s);
      b.version = m.version;
    } catch (const Error&) {
    }
  return b;
}

std::optional<layout::Slot> SystemdBootUki::next_boot() const {
  auto picked = systemd_boot_pick(*esp_);
  if (!picked) return std::nullopt;
  auto n = parse_uki_entry_name(*picked);
  if (!n) return std::nullopt;
  return n->slot;
}

void SystemdBootUki::disable(layout::Slot s) {
  for (const std::string& f : esp_->list(kUkiDir)) {
    std::string name = f;
    if (name.size() > 4 && (name.ends_with(".tmp") || name.ends_with(".TMP")))
      name.resize(name.size() - 4);
    if (auto n = parse_uki_entry_name(name); n && n->slot == s) esp_->remove(uki_path(f));
  }
}

uint64_t SystemdBootUki::next_generation() const {
  uint64_t g = 0;
  for (const std::string& f : esp_->list(kUkiDir))
    if (auto n = parse_uki_entry_name(f)) g = std::max(g, n->generation);
  return g + 1;
}

void SystemdBootUki::install(layout::Slot s, const EntrySpec& spec) {
  const std::string name = std::string("slot ") + layout::slot_char(s);
  if (spec.uki.empty() || !std::filesystem::is_regular_file(spec.uki))
    fail("the boot entry of " + name + " needs the slot's signed UKI (a Type #2 entry), got '" +
         spec.uki + "'; install a bundle built with secure_boot");
  if (spec.tries < 1) fail("boot entry needs at least 1 try, got " + std::to_string(spec.tries));
  with_context("installing the UKI of " + name, [&] {
    esp_->mkdirs(kUkiDir);
    if (!esp_->exists(kLoaderConf)) {
      esp_->mkdirs("/loader");
      esp_->write_atomic(kLoaderConf, loader_conf(true));
    }
    // A new generation: the name is new, so the copy's final rename replaces nothing. The
    // new entry is whole before the slot's older ones go: the slot always has an entry.
    const std::string file = uki_entry_name(s, next_generation(), spec.tries);
    esp_->copy_in(spec.uki, uki_path(file));
    for (const std::string& old : slot_files(*esp_, s))
      if (old != file) esp_->remove(uki_path(old));
  });
}

std::string SystemdBootUki::require_entry(layout::Slot s, const char* action) const {
  auto f = entry_file(s);
  if (!f)
    fail(std::string("cannot ") + action + " slot " + layout::slot_char(s) + ": it has no UKI in " +
         kUkiDir + " on the " + esp_->describe() + "; install it first");
  return *f;
}

void SystemdBootUki::rename_to_new(const std::string& from, const std::string& to) {
  // FAT keeps an 8.3 name in upper case ("OSUP-1-A.EFI"): same name, nothing to do.
  if (std::equal(from.begin(), from.end(), to.begin(), to.end(),
                 [](char x, char y) { return std::tolower(x) == std::tolower(y); }))
    return;
  // A crash after an earlier rename's copy can leave the target already; it is the state
  // we want, so the source goes instead of being renamed over it.
  if (esp_->exists(uki_path(to)))
    esp_->remove(uki_path(from));
  else
    esp_->rename(uki_path(from), uki_path(to));
}

void SystemdBootUki::make_first(layout::Slot s) {
  // Rollback: a higher generation and no counter (good).
  const std::string f = require_entry(s, "make first");
  rename_to_new(f, uki_entry_name(s, next_generation()));
}

void SystemdBootUki::mark_good(layout::Slot s) {
  // What systemd-bless-boot does on success: drop the counter from the name.
  const std::string f = require_entry(s, "mark good");
  rename_to_new(f, uki_entry_name(s, parse_uki_entry_name(f)->generation));
}

void SystemdBootUki::mark_bad(layout::Slot s) {
  // systemd-bless-boot's "bad": +0-DONE, which the loader sorts last.
  const std::string f = require_entry(s, "mark bad");
  const UkiEntryName n = *parse_uki_entry_name(f);
  rename_to_new(f, uki_entry_name(s, n.generation, 0, std::max(n.tries_done, 0)));
}

}  // namespace osup
