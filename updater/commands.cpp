#include "updater/commands.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "format/bundle.h"
#include "format/cli_args.h"
#include "format/error.h"
#include "format/fd.h"
#include "format/process.h"
#include "format/size.h"
#include "format/verity.h"
#include "updater/install.h"
#include "updater/lock.h"

using nlohmann::json;

namespace osup {
namespace {

constexpr const char* kUsage =
    "usage: osup [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status [--json]                       slots, versions, states, next boot, data usage\n"
    "  switch BUNDLE|- [--reboot] [--allow-downgrade] [--no-readback]\n"
    "                                        install into the inactive slot and boot it next\n"
    "  rollback [--reboot] [--force]         boot the other slot next (metadata only)\n"
    "  mark-good | mark-bad                  judge the booted slot\n"
    "  verify [a|b]                          re-hash a slot against its signed manifest\n"
    "  info BUNDLE|- [--json]                a bundle's manifest and signature status\n"
    "\n"
    "global options:\n"
    "  --disk PATH        work offline on a disk image file or unmounted device\n"
    "  --booted a|b       offline: the slot to treat as booted (default: the loader's pick)\n"
    "  --esp DIR          use a mounted ESP instead of finding it\n"
    "  --keys DIR         trusted public keys (default /usr/lib/osup/keys)\n"
    "  --boot-loader auto|systemd-boot|grub\n"
    "  --progress auto|bar|json|none\n"
    "  --lock-wait SECONDS  how long to wait while another osup works on the disk (default 60)\n";

constexpr const char* kDefaultKeys = "/usr/lib/osup/keys";

struct Globals {
  DiscoverOptions discover;
  std::optional<std::string> booted, keys;
  std::string loader = "auto";
  ProgressMode progress = ProgressMode::automatic;
  double lock_wait = 60;  // seconds; covers a boot's mark-good, not a whole other switch
};

const std::set<std::string> kGlobalValued = {"disk",        "booted",   "esp",      "keys",
                                             "boot-loader", "progress", "lock-wait"};

// A non-negative number of seconds ("0", "90", "2.5"), or a one-line error naming OPTION.
double parse_seconds(const std::string& text, const std::string& option) {
  double v = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= 0) || v > 1e6)
    fail(option + " wants a number of seconds such as 60, not '" + text + "'");
  return v;
}

std::string slot_str(layout::Slot s) { return std::string(1, layout::slot_char(s)); }

struct Session {
  System sys;
  std::unique_ptr<BootControl> boot;
};

Session open_session(const Globals& g) {
  Session s{discover(g.discover), nullptr};
  if (g.booted) {
    if (!s.sys.offline) fail("--booted only applies offline, with --disk");
    s.sys.booted = layout::parse_slot(*g.booted);
  }
  s.boot = make_boot_control(g.loader, s.sys.esp_files);
  return s;
}

sig::TrustStore load_trust(const Globals& g, const System& sys) {
  if (g.keys) return sig::TrustStore::load_dir(*g.keys);
  if (sys.offline) fail("working offline (--disk) needs --keys DIR with the public keys to trust");
  return sig::TrustStore::load_dir(kDefaultKeys);
}

void reboot_now() {
  std::fflush(stdout);
  run_checked({"systemctl", "reboot"});
}

// Usage of the data partition: statfs when mounted, the ext4 superblock offline.
json data_usage(const System& sys) {
  json j = {{"partition", sys.data.number}, {"size", sys.data.size}};
  if (!sys.data_mount.empty()) {
    struct statvfs st {};
    if (::statvfs(sys.data_mount.c_str(), &st) == 0) {
      j["mount"] = sys.data_mount;
      j["filesystem_size"] = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
      j["free"] = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    }
    return j;
  }
  unsigned char sb[1024];
  UniqueFd fd = open_file(sys.disk, O_RDONLY);
  if (pread_full(fd.get(), std::as_writable_bytes(std::span(sb)), sys.data.start + 1024,
                 sys.disk) != sizeof sb ||
      sb[0x38] != 0x53 || sb[0x39] != 0xEF)
    return j;  // not (yet) ext4
  auto le32 = [&](size_t o) {
    return static_cast<uint64_t>(sb[o]) | static_cast<uint64_t>(sb[o + 1]) << 8 |
           static_cast<uint64_t>(sb[o + 2]) << 16 | static_cast<uint64_t>(sb[o + 3]) << 24;
  };
  uint64_t block = 1024ULL << le32(0x18);
  bool is64 = le32(0x60) & 0x80;  // INCOMPAT_64BIT
  uint64_t blocks = le32(0x4) | (is64 ? le32(0x150) << 32 : 0);
  uint64_t free_blocks = le32(0xC) | (is64 ? le32(0x158) << 32 : 0);
  j["filesystem_size"] = blocks * block;
  j["free"] = free_blocks * block;
  return j;
}

json status_json(const Session& s) {
  json slots = json::object();
  for (layout::Slot slot : {layout::Slot::a, layout::Slot::b}) {
    SlotBoot b = s.boot->slot(slot);
    json j = {{"state", to_string(b.state)},
              {"tries_left", b.tries_left},
              {"tries_done", b.tries_done},
              {"generation", b.generation}};
    try {
      if (auto m = slot_manifest(s.sys, slot)) {
        j["name"] = m->name;
        j["version"] = m->version;
        j["compatible"] = m->compatible;
        j["root_hash"] = m->verity.root_hash;
      }
    } catch (const Error& e) {
      j["manifest_error"] = e.what();
    }
    slots[slot_str(slot)] = j;
  }
  json j = {{"disk", s.sys.disk},
            {"offline", s.sys.offline},
            {"arch", arch_name(s.sys.arch)},
            {"boot_loader", s.boot->name()},
            {"slots", slots},
            {"data", data_usage(s.sys)}};
  j["booted"] = s.sys.booted ? json(slot_str(*s.sys.booted)) : json(nullptr);
  auto next = s.boot->next_boot();
  j["next_boot"] = next ? json(slot_str(*next)) : json(nullptr);
  return j;
}

void print_status(const json& j) {
  std::printf("disk %s (%s, %s%s)\n", j["disk"].get<std::string>().c_str(),
              j["arch"].get<std::string>().c_str(), j["boot_loader"].get<std::string>().c_str(),
              j["offline"].get<bool>() ? ", offline" : "");
  for (const auto& [name, s] : j["slots"].items()) {
    std::string marks;
    if (j["booted"] == name) marks += " [booted]";
    if (j["next_boot"] == name) marks += " [next boot]";
    std::string version = s.contains("version")
                              ? s["name"].get<std::string>() + " " + s["version"].get<std::string>()
                              : "-";
    std::string state = s["state"];
    if (state == "trying")
      state += " (" + std::to_string(s["tries_left"].get<int>()) + " tries left)";
    std::printf("  slot %s: %-24s %s%s\n", name.c_str(), version.c_str(), state.c_str(),
                marks.c_str());
  }
  const json& d = j["data"];
  if (d.contains("filesystem_size")) {
    uint64_t size = d["filesystem_size"], free = d["free"];
    std::printf("  data: %s used of %s\n", format_size(size - free).c_str(),
                format_size(size).c_str());
  }
}

int cmd_status(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup status", args, {}, {"json"});
  a.expect_positionals(0, 0, "osup status [--json]");
  Session s = open_session(g);
  json j = status_json(s);
  if (a.flag("json"))
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_status(j);
  return 0;
}

int cmd_switch(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup switch", args, {}, {"reboot", "allow-downgrade", "no-readback", "json"});
  a.expect_positionals(1, 1, "osup switch BUNDLE|- [--reboot] [--allow-downgrade]");
  Session s = open_session(g);
  DiskLock lock(s.sys.disk, "switch", g.lock_wait);
  sig::TrustStore trust = load_trust(g, s.sys);
  InstallOptions o{a.positionals()[0], a.flag("allow-downgrade"), !a.flag("no-readback"),
                   g.progress};
  InstallResult r = install_bundle(s.sys, *s.boot, trust, o);
  if (a.flag("json")) {
    json j = {{"slot", slot_str(r.slot)},
              {"version", r.version},
              {"root_bytes", r.root_bytes},
              {"stream_seconds", r.stream_seconds},
              {"readback_seconds", r.readback_seconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("installed %s into slot %s; it boots next (%d tries)\n", r.version.c_str(),
                slot_str(r.slot).c_str(), s.boot->slot(r.slot).tries_left);
  }
  if (a.flag("reboot")) reboot_now();
  return 0;
}

int cmd_rollback(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup rollback", args, {}, {"reboot", "force"});
  a.expect_positionals(0, 0, "osup rollback [--reboot] [--force]");
  Session s = open_session(g);
  DiskLock lock(s.sys.disk, "rollback", g.lock_wait);
  const layout::Slot target = layout::other(current_slot(s.sys, *s.boot));
  const std::string name = "slot " + slot_str(target);
  SlotBoot b = s.boot->slot(target);
  if (b.state == SlotState::empty) fail("cannot roll back: " + name + " holds no bootable version");
  if (b.state == SlotState::bad && !a.flag("force"))
    fail("cannot roll back: " + name +
         " is marked bad (it failed to boot); pass --force to try it anyway");
  if (!a.flag("force")) {
    // Only a version whose signature and hash tree still check out is worth booting.
    sig::TrustStore trust = load_trust(g, s.sys);
    Manifest m = with_context("cannot roll back",
                              [&] { return verified_slot_manifest(s.sys, target, trust); });
    with_context("cannot roll back: " + name + "'s verity tree",
                 [&] { check_slot_tree(s.sys, target, m); });
  }
  s.boot->make_first(target);
  std::printf("slot %s boots next\n", slot_str(target).c_str());
  if (a.flag("reboot")) reboot_now();
  return 0;
}

int cmd_mark(const Globals& g, const std::vector<std::string>& args, bool good) {
  CliArgs a(good ? "osup mark-good" : "osup mark-bad", args, {}, {});
  a.expect_positionals(0, 0, good ? "osup mark-good" : "osup mark-bad");
  Session s = open_session(g);
  DiskLock lock(s.sys.disk, good ? "mark-good" : "mark-bad", g.lock_wait);
  layout::Slot slot = current_slot(s.sys, *s.boot);
  if (good)
    s.boot->mark_good(slot);
  else
    s.boot->mark_bad(slot);
  std::printf("slot %s marked %s\n", slot_str(slot).c_str(), good ? "good" : "bad");
  return 0;
}

int cmd_verify(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup verify", args, {}, {});
  a.expect_positionals(0, 1, "osup verify [a|b]");
  Session s = open_session(g);
  layout::Slot slot = a.positionals().empty() ? current_slot(s.sys, *s.boot)
                                              : layout::parse_slot(a.positionals()[0]);
  sig::TrustStore trust = load_trust(g, s.sys);
  verify_slot(s.sys, slot, trust, g.progress);
  std::printf("slot %s verified\n", slot_str(slot).c_str());
  return 0;
}

int cmd_info(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup info", args, {}, {"json"});
  a.expect_positionals(1, 1, "osup info BUNDLE|- [--json]");
  const std::string path = a.positionals()[0];
  UniqueFd fd;
  if (path != "-") fd = open_file(path, O_RDONLY);
  BundleReader reader(path == "-" ? STDIN_FILENO : fd.get(), path == "-" ? "stdin" : path);
  reader.read_header();
  Manifest m = reader.parse_unverified();
  json sigj;
  std::optional<std::string> keys = g.keys;
  if (!keys && std::filesystem::exists(kDefaultKeys)) keys = kDefaultKeys;
  if (keys) {
    sig::TrustStore trust = sig::TrustStore::load_dir(*keys);
    const sig::PublicKey* k = trust.find_signer(reader.manifest_bytes(), reader.signature());
    sigj = {{"status", k ? "valid" : "untrusted"}, {"keys", *keys}};
    if (k) sigj["key_id"] = k->key_id();
  } else {
    sigj = {{"status", "not checked"}, {"hint", "pass --keys DIR"}};
  }
  json j = json::parse(reader.manifest_bytes());
  j["signature"] = sigj;
  if (a.flag("json")) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s %s (%s), compatible %s\n", m.name.c_str(), m.version.c_str(), m.arch.c_str(),
              m.compatible.c_str());
  std::printf("signature: %s\n", sigj["status"].get<std::string>().c_str());
  for (const Payload& p : m.payloads)
    std::printf("  %-7s %10s  sha256 %s\n", p.name.c_str(), format_size(p.size).c_str(),
                p.sha256.c_str());
  return 0;
}

}  // namespace

int run_osup(const std::vector<std::string>& all) {
  try {
    // Global options come before the command.
    Globals g;
    size_t i = 0;
    std::vector<std::string> globals;
    while (i < all.size() && all[i].rfind("--", 0) == 0 && all[i] != "--help") {
      globals.push_back(all[i]);
      if (all[i].find('=') == std::string::npos && kGlobalValued.count(all[i].substr(2)) &&
          i + 1 < all.size())
        globals.push_back(all[++i]);
      ++i;
    }
    CliArgs ga("osup", globals, kGlobalValued, {});
    g.discover.disk = ga.value("disk");
    g.discover.esp_mount = ga.value("esp");
    g.booted = ga.value("booted");
    g.keys = ga.value("keys");
    g.loader = ga.value_or("boot-loader", "auto");
    g.progress = parse_progress_mode(ga.value_or("progress", "auto"));
    if (auto w = ga.value("lock-wait")) g.lock_wait = parse_seconds(*w, "--lock-wait");
    if (i >= all.size() || all[i] == "--help" || all[i] == "help") {
      std::fputs(kUsage, i >= all.size() ? stderr : stdout);
      return i >= all.size() ? 2 : 0;
    }
    const std::string& cmd = all[i];
    std::vector<std::string> args(all.begin() + static_cast<long>(i) + 1, all.end());
    if (cmd == "status") return cmd_status(g, args);
    if (cmd == "switch") return cmd_switch(g, args);
    if (cmd == "rollback") return cmd_rollback(g, args);
    if (cmd == "mark-good") return cmd_mark(g, args, true);
    if (cmd == "mark-bad") return cmd_mark(g, args, false);
    if (cmd == "verify") return cmd_verify(g, args);
    if (cmd == "info") return cmd_info(g, args);
    std::fprintf(stderr, "osup: unknown command '%s'; run osup --help\n", cmd.c_str());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "osup: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "osup: %s\n", e.what());
    return 1;
  }
}

}  // namespace osup
