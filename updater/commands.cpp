#include "updater/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/cli_args.h"
#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "format/bundle_reader.h"
#include "format/delta.h"
#include "format/verity.h"
#include "updater/bundle_source.h"
#include "updater/delta_install.h"
#include "updater/fleet/fleet_status.h"
#include "updater/fleet/fleet_update.h"
#include "updater/install.h"
#include "updater/lock.h"
#include "updater/machine/machine_cli.h"
#include "updater/rollback.h"
#include "updater/status.h"
#include "updater/update.h"
#include "updater/update_config.h"
#include "updater/verify.h"

using nlohmann::json;

namespace osup {
namespace {

constexpr const char* kUsage =
    "usage: osup [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status [--json]                       slots, versions, states, next boot, data usage\n"
    "  state [a|b] [--json]                  one slot's state (default: the booted one)\n"
    "  switch BUNDLE|DELTA|URL|- [--reboot] [--allow-downgrade] [--no-readback]\n"
    "                                        install into the inactive slot and boot it next\n"
    "  rollback [--reboot] [--force]         boot the other slot next (metadata only)\n"
    "  mark-good | mark-bad                  judge the booted slot\n"
    "  verify [a|b]                          re-hash a slot against its signed manifest\n"
    "  info BUNDLE|- [--json]                a bundle's manifest and signature status\n"
    "  update [--check] [--json] [--reboot] [--channel URL] [--ca FILE] [--retries N]\n"
    "         [--state-dir DIR] [--cache-dir DIR] [--config FILE] [--machine-id ID]\n"
    "                                        install the newest release of the channel in\n"
    "                                        /etc/osup/update.conf (a delta when it has one)\n"
    "  fleet status [--json] [--config FILE] per release: machines waiting, trying, good,\n"
    "                                        rolled back; reboot slot holders (docs/fleet.md)\n"
    "  apply FILE [--dry-run] [--json]       make the machine's os settings, Flatpak apps and\n"
    "                                        containers what the machine file says\n"
    "                                        (docs/machine.md)\n"
    "  export [--json] [--output FILE]       the machine file that describes this machine now\n"
    "  data backup|restore [--file F] [--snapshot ID] [--force]  restic backup of its data\n"
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

struct Session {
  OsupDisk disk;
  std::unique_ptr<BootControl> boot;
};

Session open_session(const Globals& g) {
  Session s{discover_disk(g.discover), nullptr};
  if (g.booted) {
    if (!s.disk.offline) fail("--booted only applies offline, with --disk");
    s.disk.booted = layout::parse_slot(*g.booted);
  }
  s.boot = make_boot_control(g.loader, s.disk.esp_files);
  return s;
}

sig::TrustStore load_trust(const Globals& g) {
  if (g.keys) return sig::TrustStore::load_dir(*g.keys);
  if (g.discover.disk)
    fail("working offline (--disk) needs --keys DIR with the public keys to trust");
  if (!std::filesystem::exists(kDefaultKeys))  // `osup switch` asks first, before the disk
    fail(std::string("no trusted keys: ") + kDefaultKeys +
         " does not exist, so this is not a system built by osup-build; to work on a disk "
         "image, give --disk IMG --keys DIR");
  return sig::TrustStore::load_dir(kDefaultKeys);
}

void reboot_now() {
  std::fflush(stdout);
  run_checked({"systemctl", "reboot"});
}

// A local file that starts with the delta magic (a delta made by osup-build publish/delta).
bool is_delta_file(const std::string& what) {
  if (what == "-" || is_url(what)) return false;
  const int fd = ::open(what.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  UniqueFd guard(fd);
  char magic[8] = {};
  return ::pread(fd, magic, sizeof magic, 0) == static_cast<ssize_t>(sizeof magic) &&
         std::string_view(magic, sizeof magic) == delta::kMagic;
}

void print_plan(const UpdatePlan& p, bool json_out) {
  if (json_out) return;
  if (!p.release) {
    std::printf("%s is the newest release for this machine on channel %s (serial %llu)\n",
                p.current.c_str(), p.channel.c_str(), static_cast<unsigned long long>(p.serial));
    return;
  }
  const uint64_t left = p.file.size - p.already;
  std::printf("update %s -> %s from channel %s: %s, %s to download%s\n", p.current.c_str(),
              p.release->version.c_str(), p.channel.c_str(),
              p.delta ? ("delta (full bundle " + format_size(p.release->bundle.size) + ")").c_str()
                      : "full bundle",
              format_size(left).c_str(),
              p.already ? (" (" + format_size(p.already) + " already fetched)").c_str() : "");
  std::fflush(stdout);
}

json update_json(const UpdateOutcome& out) {
  const UpdatePlan& p = out.plan;
  json j{{"current", p.current},
         {"channel", p.channel},
         {"serial", p.serial},
         {"available", p.release ? json(p.release->version) : json(nullptr)},
         {"installed", out.installed}};
  if (p.release) {
    j["method"] = p.delta ? "delta" : "full";
    j["download_bytes"] = p.file.size - p.already;
    j["full_bytes"] = p.release->bundle.size;
  }
  if (!out.fallback.empty()) j["delta_failed"] = out.fallback;
  if (!out.refused.empty()) j["refused"] = out.refused;
  if (out.install) {
    j["slot"] = layout::slot_name(out.install->slot);
    j["stream_seconds"] = out.install->stream_seconds;
  }
  return j;
}

int cmd_update(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup update", args,
            {"channel", "ca", "config", "state-dir", "cache-dir", "machine-id", "retries"},
            {"check", "json", "reboot", "allow-downgrade"});
  a.expect_positionals(0, 0, "osup update [--check] [--json] [--reboot] [--channel URL]");
  const UpdateConfig conf = read_update_config(a.value_or("config", kUpdateConfigPath));
  UpdateOptions o;
  o.channel_url = a.value("channel").value_or(conf.channel.value_or(""));
  if (o.channel_url.empty())
    fail("no update channel: set 'channel = URL' in " + a.value_or("config", kUpdateConfigPath) +
         " or pass --channel URL");
  if (!is_url(o.channel_url))
    fail("--channel wants an http:// or https:// URL, not '" + o.channel_url + "'");
  o.http.ca_file = a.value("ca").value_or(conf.ca.value_or(""));
  if (auto n = a.value("retries")) {
    int v = -1;
    auto [end, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
    if (ec != std::errc() || end != n->data() + n->size() || v < 0 || v > 100)
      fail("--retries wants a whole number 0-100, not '" + *n + "'");
    o.http.max_attempts = v + 1;
  }
  o.state_dir = a.value_or("state-dir", o.state_dir);
  o.cache_dir = a.value_or("cache-dir", o.cache_dir);
  o.machine_id = a.value("machine-id").value_or(read_machine_id());
  o.check_only = a.flag("check");
  o.allow_downgrade = a.flag("allow-downgrade");
  o.progress = g.progress;
  Session s = open_session(g);
  std::optional<DiskLock> lock;
  if (!o.check_only) lock.emplace(lock_for_writing(s.disk, "update", g.lock_wait));
  sig::TrustStore trust = load_trust(g);
  const bool json_out = a.flag("json");
  const auto say = [](const std::string& line) {
    std::fprintf(stderr, "osup: %s\n", line.c_str());
  };
  const std::unique_ptr<fleet::Fleet> fl = fleet::join_fleet(conf.fleet, o.machine_id, say);
  std::unique_ptr<fleet::SlotKeeper> keeper;  // keeps a held slot's lease alive until exit
  if (fl) fleet::attach_update_hooks(o, *fl, keeper);
  UpdateOutcome out;
  try {
    out = run_update(s.disk, *s.boot, trust, o,
                     [&](const UpdatePlan& p) { print_plan(p, json_out); });
  } catch (const Error&) {
    if (keeper) fleet::abandon_trial(*fl, o.state_dir);
    throw;
  }
  if (fl && out.installed) fleet::note_installed(o.state_dir);
  if (!out.refused.empty() && !json_out) std::printf("%s\n", out.refused.c_str());
  if (json_out) {
    std::printf("%s\n", update_json(out).dump(2).c_str());
  } else if (out.installed) {
    std::printf("installed %s into slot %s; it boots next (%d tries)%s\n",
                out.install->version.c_str(), layout::slot_name(out.install->slot).c_str(),
                s.boot->slot(out.install->slot).tries_left,
                a.flag("reboot") ? "" : "; reboot to use it");
  }
  if (out.installed && a.flag("reboot")) reboot_now();
  return 0;
}

int cmd_status(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup status", args, {}, {"json"});
  a.expect_positionals(0, 0, "osup status [--json]");
  Session s = open_session(g);
  json j = status_json(s.disk, *s.boot);
  if (a.flag("json"))
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_status(j);
  return 0;
}

// One word for scripts (the health-failure hook): the state of the booted slot, or of
// the slot named, as the boot backend in use sees it.
int cmd_state(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup state", args, {}, {"json"});
  a.expect_positionals(0, 1, "osup state [a|b] [--json]");
  Session s = open_session(g);
  const layout::Slot slot = a.positionals().empty() ? current_slot(s.disk, *s.boot)
                                                    : layout::parse_slot(a.positionals()[0]);
  const SlotBoot b = s.boot->slot(slot);
  if (a.flag("json"))
    std::printf("%s\n", json({{"slot", layout::slot_name(slot)},
                              {"state", to_string(b.state)},
                              {"tries_left", b.tries_left},
                              {"boot_loader", s.boot->name()}})
                            .dump()
                            .c_str());
  else
    std::printf("%s\n", to_string(b.state));
  return 0;
}

void print_installed(const InstallResult& r, const BootControl& boot, bool json_out) {
  if (json_out) {
    json j = {{"slot", layout::slot_name(r.slot)},
              {"version", r.version},
              {"root_bytes", r.root_bytes},
              {"stream_seconds", r.stream_seconds},
              {"readback_seconds", r.readback_seconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("installed %s into slot %s; it boots next (%d tries)\n", r.version.c_str(),
                layout::slot_name(r.slot).c_str(), boot.slot(r.slot).tries_left);
  }
}

int cmd_switch(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup switch", args, {}, {"reboot", "allow-downgrade", "no-readback", "json"});
  a.expect_positionals(1, 1, "osup switch BUNDLE|- [--reboot] [--allow-downgrade]");
  const std::string& what = a.positionals()[0];
  if (is_delta_file(what)) {
    Session s = open_session(g);
    DiskLock lock = lock_for_writing(s.disk, "switch", g.lock_wait);
    InstallResult r =
        install_delta(s.disk, *s.boot, load_trust(g),
                      DeltaInstallOptions{what, a.flag("allow-downgrade"), g.progress});
    print_installed(r, *s.boot, a.flag("json"));
    if (a.flag("reboot")) reboot_now();
    return 0;
  }
  InstallOptions o{a.positionals()[0], a.flag("allow-downgrade"), !a.flag("no-readback"),
                   g.progress};
  // The signature first, from the bundle's first two entries: a bundle signed by another key
  // is refused at once, before the disk is found, its ESP read or its lock waited for.
  VerifiedBundle bundle = open_verified_bundle(o.bundle, load_trust(g));
  Session s = open_session(g);
  DiskLock lock = lock_for_writing(s.disk, "switch", g.lock_wait);
  InstallResult r = install_bundle(s.disk, *s.boot, bundle, o);
  print_installed(r, *s.boot, a.flag("json"));
  if (a.flag("reboot")) reboot_now();
  return 0;
}

int cmd_rollback(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup rollback", args, {}, {"reboot", "force"});
  a.expect_positionals(0, 0, "osup rollback [--reboot] [--force]");
  Session s = open_session(g);
  DiskLock lock = lock_for_writing(s.disk, "rollback", g.lock_wait);
  std::optional<sig::TrustStore> trust;
  if (!a.flag("force")) trust = load_trust(g);
  const RollbackResult r = rollback(s.disk, *s.boot, trust ? &*trust : nullptr, a.flag("force"));
  const std::string what =
      "slot " + layout::slot_name(r.slot) + (r.version.empty() ? "" : " (" + r.version + ")");
  const char* then = a.flag("reboot") ? "rebooting" : "reboot to start it";
  if (r.changed)
    std::printf("rolled back: %s boots next; %s\n", what.c_str(), then);
  else
    std::printf("%s already boots next, nothing changed; %s\n", what.c_str(), then);
  if (a.flag("reboot")) reboot_now();
  return 0;
}

int cmd_mark(const Globals& g, const std::vector<std::string>& args, bool good) {
  CliArgs a(good ? "osup mark-good" : "osup mark-bad", args, {}, {});
  a.expect_positionals(0, 0, good ? "osup mark-good" : "osup mark-bad");
  Session s = open_session(g);
  DiskLock lock = lock_for_writing(s.disk, good ? "mark-good" : "mark-bad", g.lock_wait);
  layout::Slot slot = current_slot(s.disk, *s.boot);
  if (good)
    s.boot->mark_good(slot);
  else
    s.boot->mark_bad(slot);
  std::printf("slot %s marked %s\n", layout::slot_name(slot).c_str(), good ? "good" : "bad");
  std::string warn;  // the fleet's part never fails the mark (a boot must not wait on it)
  try {              // offline (--disk) there is no fleet: the image is not the machine's own boot
    if (!s.disk.offline)
      warn = fleet::after_boot_judged(
          good, read_update_config(kUpdateConfigPath).fleet, "/var/lib/osup", read_machine_id(),
          [&] { return verified_slot_manifest(s.disk, slot, load_trust(g)).version; });
  } catch (const Error& e) {
    warn = std::string("fleet: ") + e.what();
  }
  if (!warn.empty()) std::fprintf(stderr, "osup: %s\n", warn.c_str());
  return 0;
}

int cmd_verify(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup verify", args, {}, {});
  a.expect_positionals(0, 1, "osup verify [a|b]");
  Session s = open_session(g);
  layout::Slot slot = a.positionals().empty() ? current_slot(s.disk, *s.boot)
                                              : layout::parse_slot(a.positionals()[0]);
  sig::TrustStore trust = load_trust(g);
  verify_slot(s.disk, slot, trust, g.progress);
  std::printf("slot %s verified\n", layout::slot_name(slot).c_str());
  return 0;
}

int cmd_info(const Globals& g, const std::vector<std::string>& args) {
  CliArgs a("osup info", args, {}, {"json"});
  a.expect_positionals(1, 1, "osup info BUNDLE|- [--json]");
  const std::string path = a.positionals()[0];
  const std::unique_ptr<ByteSource> source = open_bundle_source(path);
  BundleReader reader(*source);
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
  } else {
    std::printf("%s %s (%s), compatible %s\n", m.name.c_str(), m.version.c_str(), m.arch.c_str(),
                m.compatible.c_str());
    std::printf("signature: %s\n", sigj["status"].get<std::string>().c_str());
    for (const Payload& p : m.payloads)
      std::printf("  %-7s %10s  sha256 %s\n", to_string(p.kind).c_str(),
                  format_size(p.size).c_str(), p.sha256.c_str());
  }
  // Shown, but a signature that does not verify fails the command (as osup-build inspect).
  if (sigj["status"] == "untrusted") {
    std::fflush(stdout);
    fail("signature of " + path + " is untrusted: it does not match any key in " + *keys +
         "; was it signed with the right key?");
  }
  return 0;
}

int dispatch(const std::vector<std::string>& all) {
  // Global options come before the command.
  CliArgs ga = CliArgs::leading("osup", all, kGlobalValued, {"help"});
  Globals g;
  g.discover.disk = ga.value("disk");
  g.discover.esp_mount = ga.value("esp");
  g.booted = ga.value("booted");
  g.keys = ga.value("keys");
  g.loader = ga.value_or("boot-loader", "auto");
  g.progress = parse_progress_mode(ga.value_or("progress", "auto"));
  if (auto w = ga.value("lock-wait")) g.lock_wait = parse_seconds(*w, "--lock-wait");
  const std::vector<std::string>& rest = ga.rest();
  if (ga.flag("help") || (!rest.empty() && rest[0] == "help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (rest.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string& cmd = rest[0];
  const std::vector<std::string> args(rest.begin() + 1, rest.end());
  if (cmd == "status") return cmd_status(g, args);
  if (cmd == "state") return cmd_state(g, args);
  if (cmd == "switch") return cmd_switch(g, args);
  if (cmd == "rollback") return cmd_rollback(g, args);
  if (cmd == "mark-good") return cmd_mark(g, args, true);
  if (cmd == "mark-bad") return cmd_mark(g, args, false);
  if (cmd == "verify") return cmd_verify(g, args);
  if (cmd == "info") return cmd_info(g, args);
  if (cmd == "update") return cmd_update(g, args);
  if (cmd == "fleet") return fleet::cmd_fleet(args, kUpdateConfigPath);
  if (cmd == "apply") return machine::cmd_apply(args, g.lock_wait);
  if (cmd == "export") return machine::cmd_export(args);
  if (cmd == "data") return machine::cmd_data(args, g.progress);
  std::fprintf(stderr, "osup: unknown command '%s'; run osup --help\n", cmd.c_str());
  return 2;
}

}  // namespace

int run_osup(const std::vector<std::string>& args) {
  return run_cli("osup", [&] { return dispatch(args); });
}

}  // namespace osup
