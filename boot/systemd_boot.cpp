#include "boot/systemd_boot.h"

#include <fnmatch.h>

#include <algorithm>
#include <charconv>
#include <vector>

#include "base/error.h"
#include "boot/uki.h"

namespace osup {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_version_char(char c) {
  return is_digit(c) || is_alpha(c) || c == '~' || c == '-' || c == '^' || c == '.';
}
int sign(int v) { return (v > 0) - (v < 0); }

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

// Calls fn(key, value) for each "key value" line, skipping blanks and comments.
template <class Fn>
void for_each_line(std::string_view content, Fn&& fn) {
  size_t pos = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    std::string line = trim(content.substr(pos, end - pos));
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t sep = line.find_first_of(" \t");
    std::string key = line.substr(0, sep);
    std::string value = sep == std::string::npos ? "" : trim(line.substr(sep));
    fn(key, value);
  }
}

// Reads "# osup-KEY value" comments, where the entry keeps what the loader does not need.
std::string osup_comment(std::string_view content, const std::string& key) {
  const std::string tag = "# osup-" + key + " ";
  size_t pos = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    std::string_view line = content.substr(pos, end - pos);
    if (line.starts_with(tag)) return trim(line.substr(tag.size()));
    pos = end + 1;
  }
  return "";
}

bool parse_uint(std::string_view s, size_t& pos, uint64_t& out) {
  size_t start = pos;
  while (pos < s.size() && is_digit(s[pos])) ++pos;
  if (pos == start) return false;
  auto r = std::from_chars(s.data() + start, s.data() + pos, out);
  return r.ec == std::errc();
}

// config_entry_parse_tries: "+LEFT[-DONE]" right before ".conf", after the last '+'.
void parse_tries(const std::string& file, int& left, int& done) {
  left = done = -1;
  size_t plus = file.rfind('+');
  if (plus == std::string::npos) return;
  size_t pos = plus + 1;
  uint64_t l = 0, d = 0;
  if (!parse_uint(file, pos, l) || l > INT32_MAX) return;
  if (pos < file.size() && file[pos] == '-') {
    ++pos;
    if (!parse_uint(file, pos, d) || d > INT32_MAX) return;
  }
  if (file.substr(pos) != ".conf") return;
  left = static_cast<int>(l);
  done = static_cast<int>(d);
}

// A slot's entry has two stems, "osup-a" and "osup-a~1": a new entry of the slot (install,
// make_first) goes under the stem its current entry does not use, and only then is the old
// one removed. osup never renames over an existing entry: on FAT that frees the old file's
// clusters and rewrites its directory record in separate sectors, and a power cut between
// them leaves a name pointing at free clusters, which fsck.vfat truncates (docs/powerloss.md,
// finding 2). Both stems parse as the same slot; the loader sorts them by `version`.
constexpr std::string_view kAltStem = "~1";

bool on_alt_stem(const std::string& file) {
  return file.size() > 6 && lower(file).substr(6).starts_with(kAltStem);
}

// The one place entry names are made: stem, then the counter "+LEFT[-DONE]" if counted.
std::string entry_name(layout::Slot s, bool alt, int left = -1, int done = 0) {
  std::string n = std::string("osup-") + layout::slot_char(s);
  if (alt) n += kAltStem;
  if (left >= 0) n += "+" + std::to_string(left) + (done > 0 ? "-" + std::to_string(done) : "");
  return n + ".conf";
}

std::string entry_path(const std::string& file) { return std::string(kEntriesDir) + "/" + file; }

// The loader's view of /loader/entries, sorted as it sorts them.
std::vector<LoaderEntry> sorted_entries(const EspAccess& esp) {
  std::vector<LoaderEntry> out;
  for (const std::string& f : esp.list(kEntriesDir)) {
    // Only names the loader would read: a crash mid-write can leave a *.tmp whose FAT
    // chain is broken, and reading it must not hide the entries that are whole.
    const std::string id = lower(f);
    if (!id.ends_with(".conf") || id.starts_with("auto-")) continue;
    std::optional<std::string> content;
    try {
      content = esp.read(entry_path(f));
    } catch (const Error&) {
      // The loader skips a file it cannot read. A cut while an old entry is removed can
      // leave its record on clusters the FAT already freed; the new entry beside it is
      // whole and has the higher generation.
      continue;
    }
    if (!content) continue;
    auto e = parse_loader_entry(f, *content);
    // The loader drops entries whose kernel is missing.
    if (e && esp.exists(e->linux_path)) out.push_back(std::move(*e));
  }
  // Type #2 entries: every *.efi in /EFI/Linux (the UKIs of boot/systemd_boot_uki.h).
  for (const std::string& f : esp.list(kUkiDir))
    if (auto e = uki_loader_entry(f)) out.push_back(std::move(*e));
  std::stable_sort(out.begin(), out.end(), [](const LoaderEntry& a, const LoaderEntry& b) {
    return compare_loader_entries(a, b) < 0;
  });
  return out;
}

uint64_t generation_of(const std::string& content) {
  uint64_t g = 0;
  for_each_line(content, [&](const std::string& k, const std::string& v) {
    if (k == "version") {
      size_t pos = 0;
      if (!parse_uint(v, pos, g) || pos != v.size()) g = 0;
    }
  });
  return g;
}

// Replaces the `version` line, keeping everything else.
std::string with_generation(const std::string& content, uint64_t gen) {
  std::string out;
  size_t pos = 0;
  bool done = false;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(pos, end - pos);
    pos = end + 1;
    if (!done && (line.starts_with("version ") || line.starts_with("version\t"))) {
      line = "version " + std::to_string(gen);
      done = true;
    }
    out += line + "\n";
  }
  if (!done) out += "version " + std::to_string(gen) + "\n";
  return out;
}

}  // namespace

std::optional<layout::Slot> osup_entry_slot(const std::string& file) {
  const std::string id = lower(file);
  if (!id.starts_with("osup-") || id.size() < 7 || !id.ends_with(".conf")) return std::nullopt;
  const char c = id[5];
  if (c != 'a' && c != 'b') return std::nullopt;
  std::string rest = id.substr(6);
  if (rest.starts_with(kAltStem)) rest = rest.substr(kAltStem.size());
  if (rest != ".conf" && rest[0] != '+') return std::nullopt;
  return c == 'a' ? layout::Slot::a : layout::Slot::b;
}

int strverscmp_improved(std::string_view a, std::string_view b) {
  if (a.empty() || b.empty()) return sign(a.compare(b));
  size_t i = 0, j = 0;
  auto at = [](std::string_view s, size_t k) { return k < s.size() ? s[k] : '\0'; };
  for (;;) {
    // Characters outside the version alphabet only separate segments.
    while (i < a.size() && !is_version_char(a[i])) ++i;
    while (j < b.size() && !is_version_char(b[j])) ++j;
    // '~' (pre-release) is older than anything, even the end of the string.
    if (at(a, i) == '~' || at(b, j) == '~') {
      if ((at(a, i) == '~') != (at(b, j) == '~')) return at(a, i) == '~' ? -1 : 1;
      ++i, ++j;
    }
    if (i >= a.size() || j >= b.size())
      return sign(a.substr(std::min(i, a.size())).compare(b.substr(std::min(j, b.size()))));
    // Then '-' (release separator) < '^' (patched) < '.' (point release) < no prefix.
    for (char prefix : {'-', '^', '.'}) {
      if (at(a, i) == prefix || at(b, j) == prefix) {
        if ((at(a, i) == prefix) != (at(b, j) == prefix)) return at(a, i) == prefix ? -1 : 1;
        ++i, ++j;
      }
    }
    size_t ie = i, je = j;
    if (is_digit(at(a, i)) || is_digit(at(b, j))) {
      // Numbers compare by value: skip leading zeros, longer is larger, then digits.
      while (at(a, i) == '0') ++i;
      while (at(b, j) == '0') ++j;
      ie = i, je = j;
      while (is_digit(at(a, ie))) ++ie;
      while (is_digit(at(b, je))) ++je;
      if (ie - i != je - j) return ie - i < je - j ? -1 : 1;
      if (int r = a.substr(i, ie - i).compare(b.substr(j, je - j)); r != 0) return sign(r);
    } else {
      while (is_alpha(at(a, ie))) ++ie;
      while (is_alpha(at(b, je))) ++je;
      const size_t n = std::min(ie - i, je - j);
      if (int r = a.substr(i, n).compare(b.substr(j, n)); r != 0) return sign(r);
      if (ie - i != je - j) return ie - i < je - j ? -1 : 1;
    }
    i = ie, j = je;
  }
}

std::optional<LoaderEntry> parse_loader_entry(const std::string& file, std::string_view content) {
  LoaderEntry e;
  e.file = file;
  e.id = lower(file);
  if (!e.id.ends_with(".conf") || e.id.starts_with("auto-") || file.starts_with("."))
    return std::nullopt;
  bool bootable = false;
  for_each_line(content, [&](const std::string& k, const std::string& v) {
    if (k == "title")
      e.title = v;
    else if (k == "sort-key")
      e.sort_key = v;
    else if (k == "version")
      e.version = v;
    else if (k == "machine-id")
      e.machine_id = v;
    else if (k == "linux" || k == "efi")
      e.linux_path = v, bootable = true;
  });
  if (!bootable) return std::nullopt;
  parse_tries(file, e.tries_left, e.tries_done);
  return e;
}

int compare_loader_entries(const LoaderEntry& a, const LoaderEntry& b) {
  if ((a.tries_left == 0) != (b.tries_left == 0)) return a.tries_left == 0 ? 1 : -1;
  if (a.sort_key.empty() != b.sort_key.empty()) return a.sort_key.empty() ? 1 : -1;
  if (!a.sort_key.empty()) {
    if (int r = a.sort_key.compare(b.sort_key); r != 0) return sign(r);
    if (int r = a.machine_id.compare(b.machine_id); r != 0) return sign(r);
    if (int r = strverscmp_improved(a.version, b.version); r != 0) return -r;
  }
  if (int r = strverscmp_improved(a.id, b.id); r != 0) return -r;
  if (a.tries_left < 0 || b.tries_left < 0) return 0;
  if (a.tries_left != b.tries_left) return a.tries_left > b.tries_left ? -1 : 1;
  if (a.tries_done != b.tries_done) return a.tries_done < b.tries_done ? -1 : 1;
  return 0;
}

std::optional<std::string> systemd_boot_pick(const EspAccess& esp) {
  const auto entries = sorted_entries(esp);
  if (entries.empty()) return std::nullopt;
  std::string pattern;
  if (auto conf = esp.read(kLoaderConf))
    for_each_line(*conf, [&](const std::string& k, const std::string& v) {
      if (k == "default") pattern = lower(v);
    });
  if (!pattern.empty())
    for (const auto& e : entries)
      if (::fnmatch(pattern.c_str(), e.id.c_str(), 0) == 0) return e.file;
  return entries.front().file;
}

std::optional<std::string> simulate_systemd_boot(EspAccess& esp) {
  auto picked = systemd_boot_pick(esp);
  if (!picked) return std::nullopt;
  int left = -1, done = -1;
  parse_tries(*picked, left, done);
  if (auto e = uki_loader_entry(*picked); e && lower(*picked).ends_with(".efi"))
    left = e->tries_left, done = e->tries_done;
  if (left < 0) return picked;
  const std::string prefix = picked->substr(0, picked->rfind('+'));
  // A Type #2 entry is counted in its own name and directory, like a Type #1 entry.
  const bool uki = lower(*picked).ends_with(".efi");
  const std::string dir = std::string(uki ? kUkiDir : kEntriesDir) + "/";
  const std::string next = prefix + "+" + std::to_string(std::max(left - 1, 0)) + "-" +
                           std::to_string(done + 1) + (uki ? ".efi" : ".conf");
  esp.rename(dir + *picked, dir + next);
  return next;
}

std::string loader_conf(bool uki) {
  return std::string(
             "# Written by osup: boot the osup entry with the highest version whose tries are\n"
             "# not exhausted. Never pin one entry here: an exhausted pinned entry still "
             "boots.\n") +
         (uki ? "default osup-*.efi\n" : "default osup-*\n") +
         "timeout 0\n"
         "editor no\n";
}

std::optional<std::string> SystemdBoot::entry_file(layout::Slot s) const {
  for (const auto& e : sorted_entries(*esp_))
    if (osup_entry_slot(e.file) == s) return e.file;
  // An entry whose kernel is missing is invisible to the loader but still ours.
  for (const std::string& f : esp_->list(kEntriesDir))
    if (osup_entry_slot(f) == s) return f;
  return std::nullopt;
}

SlotBoot SystemdBoot::slot(layout::Slot s) const {
  SlotBoot b;
  b.slot = s;
  auto file = entry_file(s);
  if (!file) return b;
  auto content = esp_->read(entry_path(*file));
  if (!content) return b;
  int left = -1, done = -1;
  parse_tries(*file, left, done);
  if (left < 0) {
    b.state = SlotState::good;
  } else {
    b.state = left > 0 ? SlotState::trying : SlotState::bad;
    b.tries_left = left;
    b.tries_done = done;
  }
  b.generation = generation_of(*content);
  if (auto e = parse_loader_entry(*file, *content)) b.title = e->title;
  b.version = osup_comment(*content, "version");
  return b;
}

std::optional<layout::Slot> SystemdBoot::next_boot() const {
  auto picked = systemd_boot_pick(*esp_);
  if (!picked) return std::nullopt;
  return osup_entry_slot(*picked);
}

void SystemdBoot::disable(layout::Slot s) {
  for (const std::string& f : esp_->list(kEntriesDir)) {
    std::string name = lower(f);
    if (name.ends_with(".tmp")) name.resize(name.size() - 4);
    if (osup_entry_slot(name) == s) esp_->remove(entry_path(f));
  }
}

uint64_t SystemdBoot::next_generation() const {
  uint64_t g = 0;
  for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) g = std::max(g, slot(s).generation);
  return g + 1;
}

void SystemdBoot::install(layout::Slot s, const EntrySpec& spec) {
  check_entry_spec(spec);
  const char c = layout::slot_char(s);
  if (!esp_->exists(spec.kernel))
    fail("kernel " + spec.kernel + " is missing on the " + esp_->describe() +
         "; copy it before installing the boot entry");
  const std::string cmdline = entry_cmdline(spec, s);
  std::string text = "# Written by osup; the loader sorts by version (a generation osup raises).\n";
  text += "# osup-version " + spec.version + "\n";
  text += "title " + entry_title(spec, s) + "\n";
  text += "sort-key osup\n";
  text += "version " + std::to_string(next_generation()) + "\n";
  text += "linux " + spec.kernel + "\n";
  if (!spec.initrd.empty()) text += "initrd " + spec.initrd + "\n";
  text += "options " + cmdline + "\n";

  with_context("installing the boot entry of slot " + std::string(1, c), [&] {
    esp_->mkdirs(kEntriesDir);
    if (!esp_->exists(kLoaderConf)) esp_->write_atomic(kLoaderConf, loader_conf());
    replace_entry(s, text, spec.tries);
  });
}

std::string SystemdBoot::require_entry(layout::Slot s, const char* action) const {
  auto f = entry_file(s);
  if (!f)
    fail(std::string("cannot ") + action + " slot " + layout::slot_char(s) +
         ": it has no boot entry in " + kEntriesDir + " on the " + esp_->describe() +
         "; install it first");
  return *f;
}

void SystemdBoot::drop_entries_except(layout::Slot s, const std::string& keep) {
  for (const std::string& f : esp_->list(kEntriesDir))
    if (osup_entry_slot(f) == s && lower(f) != lower(keep)) esp_->remove(entry_path(f));
}

void SystemdBoot::replace_entry(layout::Slot s, const std::string& text, int tries) {
  const auto current = entry_file(s);
  // A crash may have left an older entry on the other stem: it goes first, so the name
  // written below is free and the write_atomic's rename never lands on an existing entry.
  const bool alt = current && !on_alt_stem(*current);
  for (const std::string& f : esp_->list(kEntriesDir))
    if (osup_entry_slot(f) == s && on_alt_stem(f) == alt) esp_->remove(entry_path(f));
  const std::string name = entry_name(s, alt, tries);
  // Written and synced whole before the old entry goes: a cut leaves one or both, each whole.
  esp_->write_atomic(entry_path(name), text);
  drop_entries_except(s, name);
}

void SystemdBoot::make_first(layout::Slot s) {
  const std::string f = require_entry(s, "make first");
  auto content = esp_->read(entry_path(f));
  if (!content) fail("boot entry " + entry_path(f) + " vanished while reading it");
  // The good entry with a higher version, under the other stem, then drop the old one: a
  // crash in between leaves both, and the loader sorts the new one first.
  replace_entry(s, with_generation(*content, next_generation()), -1);
}

void SystemdBoot::rename_entry(layout::Slot s, const std::string& from, const std::string& to) {
  if (lower(from) == lower(to)) return;
  // Leftovers of a crash go first: the rename's target must not exist.
  drop_entries_except(s, from);
  esp_->rename(entry_path(from), entry_path(to));
}

void SystemdBoot::mark_good(layout::Slot s) {
  // Exactly what systemd-bless-boot does on success: drop the counter from the name.
  const std::string f = require_entry(s, "mark good");
  rename_entry(s, f, entry_name(s, on_alt_stem(f)));
}

void SystemdBoot::mark_bad(layout::Slot s) {
  // systemd-bless-boot's "bad": +0-DONE, which the loader sorts last.
  const std::string f = require_entry(s, "mark bad");
  int left = -1, done = -1;
  parse_tries(f, left, done);
  rename_entry(s, f, entry_name(s, on_alt_stem(f), 0, std::max(done, 0)));
}

}  // namespace osup
