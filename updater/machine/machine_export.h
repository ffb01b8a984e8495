// `osup export`: the machine file that describes this machine now, so that a fresh machine
// given it (and the backup's password) becomes the same one.
#pragma once

#include <string>
#include <vector>

#include "updater/machine/machine_config.h"

namespace osup::machine {

class PodmanBackend;
class FlatpakBackend;

struct ExportSources {
  std::string machine_file;  // the file last applied: data, and the remotes' key files
  std::string update_conf;   // os: channel and ca
};

// Containers osup made (from their labels), every Flatpak remote and app of the system
// installation with the installed commit pinned, `os` from update.conf and `data` from
// the machine file. A backend may be null (its tool is not installed). What cannot be
// exported exactly is named in NOTES.
[[nodiscard]] MachineConfig export_machine(PodmanBackend* podman, FlatpakBackend* flatpak,
                                           const ExportSources& sources,
                                           std::vector<std::string>& notes);

}  // namespace osup::machine
