#include "updater/machine/machine_cli.h"

#include <cstdio>
#include <filesystem>

#include "base/cli_args.h"
#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "updater/lock.h"
#include "updater/machine/apply.h"
#include "updater/machine/apply_stamp.h"
#include "updater/machine/flatpak_backend.h"
#include "updater/machine/machine_config_json.h"
#include "updater/machine/machine_export.h"
#include "updater/machine/os_backend.h"
#include "updater/machine/podman_backend.h"
#include "updater/machine/restic.h"
#include "updater/update_config.h"

namespace osup::machine {

namespace {
constexpr const char* kDefaultMachineFile = "/etc/osup/machine.json";
}  // namespace

int cmd_apply(const std::vector<std::string>& args, double lock_wait) {
  const std::string usage =
      "osup apply FILE [--dry-run] [--json] [--if-changed] [--state FILE] [--unit-dir DIR] "
      "[--update-conf FILE]";
  CliArgs a("osup apply", args, {"state", "unit-dir", "update-conf", "stamp", "os-release"},
            {"dry-run", "json", "if-changed"});
  a.expect_positionals(1, 1, usage);
  const std::string file = a.positionals()[0];
  const std::string state_path = a.value_or("state", kMachineStatePath);
  const bool json_out = a.flag("json"), dry = a.flag("dry-run");
  // The file is checked whole before anything is looked at or changed.
  const MachineConfig config = read_machine_config(file);
  const std::string stamp_path = a.value_or(
      "stamp", (std::filesystem::path(state_path).parent_path() / "machine-apply.stamp").string());
  const ApplyStamp stamp = current_stamp(file, a.value_or("os-release", kOsReleasePath));
  if (a.flag("if-changed") && read_stamp(stamp_path) == stamp) {
    if (json_out)
      std::printf("%s\n", nlohmann::json({{"changes", 0}, {"skipped", true}}).dump(2).c_str());
    else
      std::printf("%s and the OS are as at the last apply: nothing to do\n", file.c_str());
    return 0;
  }
  std::optional<DiskLock> lock;
  if (!dry) lock.emplace(state_path, "apply", lock_wait);
  MachineState state = read_machine_state(state_path);
  PodmanOptions po;
  po.unit_dir = a.value_or("unit-dir", po.unit_dir);
  po.systemd = systemd_running() && !a.value("unit-dir");
  PodmanBackend podman(po);
  FlatpakBackend flatpak(&config);
  OsBackend os(a.value_or("update-conf", kUpdateConfigPath), &config);
  const Backends backends = {&os, &podman, &flatpak};
  const Plan plan = plan_machine(config, state, backends);
  if (json_out) {
    nlohmann::json j = plan_json(plan);
    j["dry_run"] = dry;
    if (!dry) apply_plan(plan, config, backends, state_path, state);
    j["applied"] = !dry;
    if (!dry) write_stamp(stamp_path, stamp);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s", plan_text(plan).c_str());
  if (dry) return 0;
  std::fflush(stdout);
  size_t done = 0;
  apply_plan(plan, config, backends, state_path, state, [&](const Step& s) {
    std::fprintf(stderr, "osup: [%zu/%zu] %s %s %s\n", ++done, plan.changes(),
                 to_string(s.action).c_str(), to_string(s.resource.kind).c_str(),
                 s.resource.name.c_str());
  });
  write_stamp(stamp_path, stamp);
  if (!plan.nothing_to_do()) std::printf("applied %zu change(s)\n", plan.changes());
  return 0;
}

int cmd_export(const std::vector<std::string>& args) {
  const std::string usage =
      "osup export [--json] [--output FILE] [--file MACHINE.json] [--update-conf FILE]";
  CliArgs a("osup export", args, {"output", "file", "update-conf"}, {"json"});
  a.expect_positionals(0, 0, usage);
  std::optional<PodmanBackend> podman;
  std::optional<FlatpakBackend> flatpak;
  if (find_tool("podman")) podman.emplace(PodmanOptions{});
  if (find_tool("flatpak")) flatpak.emplace(nullptr);
  std::vector<std::string> notes;
  const MachineConfig config = export_machine(
      podman ? &*podman : nullptr, flatpak ? &*flatpak : nullptr,
      {a.value_or("file", kDefaultMachineFile), a.value_or("update-conf", kUpdateConfigPath)},
      notes);
  const std::string text = machine_config_json(config).dump(2) + "\n";
  // What is written must read back: a machine file osup apply takes.
  (void)parse_machine_config(text, "the exported machine file");
  if (const auto out = a.value("output")) atomic_write_file(*out, text, 0600);
  if (a.flag("json")) {
    std::printf("%s\n", nlohmann::json({{"machine", machine_config_json(config)}, {"notes", notes}})
                            .dump(2)
                            .c_str());
    return 0;
  }
  for (const std::string& n : notes) std::fprintf(stderr, "osup: note: %s\n", n.c_str());
  if (const auto out = a.value("output"))
    std::fprintf(stderr, "wrote %s: %zu container(s), %zu Flatpak app(s), %zu remote(s)%s%s\n",
                 out->c_str(), config.containers.size(), config.flatpaks.size(),
                 config.remotes.size(), config.os ? ", os" : "", config.data ? ", data" : "");
  else
    std::printf("%s", text.c_str());
  return 0;
}

namespace {

DataSection data_section(const std::string& file) {
  const MachineConfig config = read_machine_config(file);
  if (!config.data) fail(file + " has no data section: nothing says where to back up to");
  return *config.data;
}

int data_backup(const CliArgs& a, ProgressMode progress) {
  const BackupResult r =
      backup_data(data_section(a.value_or("file", kDefaultMachineFile)), progress);
  if (a.flag("json")) {
    std::printf("%s\n", nlohmann::json({{"snapshot", r.snapshot},
                                        {"created_repository", r.created_repository},
                                        {"files", r.files},
                                        {"bytes", r.bytes},
                                        {"added_bytes", r.added_bytes},
                                        {"seconds", r.seconds}})
                            .dump(2)
                            .c_str());
    return 0;
  }
  std::printf("backed up %llu files (%s) as snapshot %s in %.1f s; %s new in the repository%s\n",
              static_cast<unsigned long long>(r.files), format_size(r.bytes).c_str(),
              r.snapshot.c_str(), r.seconds, format_size(r.added_bytes).c_str(),
              r.created_repository ? " (created)" : "");
  return 0;
}

int data_restore(const CliArgs& a, ProgressMode progress) {
  RestoreOptions o;
  o.snapshot = a.value_or("snapshot", o.snapshot);
  o.force = a.flag("force");
  o.staging = a.value_or("staging", o.staging);
  o.progress = progress;
  const RestoreResult r = restore_data(data_section(a.value_or("file", kDefaultMachineFile)), o);
  if (a.flag("json")) {
    std::printf("%s\n", nlohmann::json({{"snapshot", r.snapshot},
                                        {"restored", r.restored},
                                        {"bytes", r.bytes},
                                        {"kept_newer", r.kept_newer}})
                            .dump(2)
                            .c_str());
    return 0;
  }
  std::printf("restored %llu files (%s) from snapshot %s\n",
              static_cast<unsigned long long>(r.restored), format_size(r.bytes).c_str(),
              r.snapshot.c_str());
  if (!r.kept_newer.empty())
    std::printf(
        "kept %zu local files that are newer than the backup's (first: %s); "
        "--force overwrites them\n",
        r.kept_newer.size(), r.kept_newer.front().c_str());
  return 0;
}

}  // namespace

int cmd_data(const std::vector<std::string>& args, ProgressMode progress) {
  const std::string usage =
      "osup data backup|restore|configured [--file MACHINE.json] [--json] [--snapshot ID] "
      "[--force]";
  if (!args.empty() && args[0] == "configured") {
    // For osup-backup.service's ExecCondition: exit 1 (the unit is skipped) without data.
    CliArgs a("osup data configured", {args.begin() + 1, args.end()}, {"file"}, {});
    a.expect_positionals(0, 0, "osup data configured [--file MACHINE.json]");
    const std::string file = a.value_or("file", kDefaultMachineFile);
    const bool yes = std::filesystem::exists(file) && read_machine_config(file).data;
    std::printf("%s\n", yes ? "data backup is configured"
                            : (file + " has no data section: no backup configured").c_str());
    return yes ? 0 : 1;
  }
  if (args.empty() || (args[0] != "backup" && args[0] != "restore"))
    fail("osup data wants a subcommand: " + usage);
  const bool backup = args[0] == "backup";
  CliArgs a(
      "osup data " + args[0], {args.begin() + 1, args.end()},
      backup ? std::set<std::string>{"file"} : std::set<std::string>{"file", "snapshot", "staging"},
      backup ? std::set<std::string>{"json"} : std::set<std::string>{"json", "force"});
  a.expect_positionals(0, 0, usage);
  return backup ? data_backup(a, progress) : data_restore(a, progress);
}

}  // namespace osup::machine
