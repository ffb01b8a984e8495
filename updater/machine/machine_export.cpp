#include "updater/machine/machine_export.h"

#include <filesystem>

#include "base/error.h"
#include "updater/machine/flatpak_backend.h"
#include "updater/machine/podman_backend.h"
#include "updater/update_config.h"

namespace fs = std::filesystem;

namespace osup::machine {
namespace {

// Remotes keep only an imported key; the key file comes from the file last applied, else
// flatpak's own copy of the key is named (it exists on this machine only).
void export_flatpaks(FlatpakBackend& flatpak, const MachineConfig& current, MachineConfig& out,
                     std::vector<std::string>& notes) {
  for (const ConfiguredRemote& r : flatpak.remotes()) {
    FlatpakRemote rem{r.url, std::nullopt, r.gpg_verify};
    if (r.gpg_verify) {
      const auto known = current.remotes.find(r.name);
      if (known != current.remotes.end() && known->second.gpg_key) {
        rem.gpg_key = known->second.gpg_key;
      } else {
        rem.gpg_key = "/var/lib/flatpak/repo/" + r.name + ".trustedkeys.gpg";
        notes.push_back("flatpak remote '" + r.name + "': its key file is unknown; " +
                        *rem.gpg_key + " is named, copy it next to the file");
      }
    }
    out.remotes[r.name] = rem;
  }
  for (const InstalledFlatpak& a : flatpak.apps()) {
    if (!out.remotes.count(a.origin)) {
      notes.push_back("flatpak app '" + a.id + "' comes from remote '" + a.origin +
                      "', which is gone: not exported");
      continue;
    }
    out.flatpaks[a.id] = FlatpakApp{a.origin, a.branch, a.commit, a.permissions};
  }
}

}  // namespace

MachineConfig export_machine(PodmanBackend* podman, FlatpakBackend* flatpak,
                             const ExportSources& sources, std::vector<std::string>& notes) {
  MachineConfig current;
  if (fs::exists(sources.machine_file)) current = read_machine_config(sources.machine_file);
  MachineConfig out;
  const UpdateConfig conf = read_update_config(sources.update_conf);
  if (conf.channel) out.os = OsSection{*conf.channel, conf.ca};
  if (flatpak) export_flatpaks(*flatpak, current, out, notes);
  if (podman) out.containers = podman->exported_containers(notes);
  out.data = current.data;
  return out;
}

}  // namespace osup::machine
