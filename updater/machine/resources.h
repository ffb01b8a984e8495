// What a machine file asks for, as a flat list of resources, each with a fingerprint of
// the configuration it is created from: a changed fingerprint means "recreate it".
#pragma once

#include <string>
#include <vector>

#include "updater/machine/machine_config.h"

namespace osup::machine {

// The kinds, in the order adds run (removals run in reverse: containers before their network).
// `os` is the file's os section, written into /etc/osup/update.conf.
enum class Kind { os, remote, flatpak, network, container };
[[nodiscard]] std::string to_string(Kind k);
[[nodiscard]] const std::vector<Kind>& all_kinds();

struct Resource {
  Kind kind = Kind::container;
  std::string name;
  std::string fingerprint;  // SHA-256 hex of the canonical configuration
  bool operator==(const Resource&) const = default;
};

// The podman network every container of the file joins, so they reach each other by name.
inline constexpr const char* kNetworkName = "osup";

// The one resource of kind os.
inline constexpr const char* kOsResourceName = "update.conf";

[[nodiscard]] std::string os_fingerprint(const std::string& channel, const std::string& ca);
[[nodiscard]] std::string container_fingerprint(const Container& c);
// Flatpak resources carry no label, so their fingerprints hold only what can be read back
// from flatpak (a remote's key file cannot: a changed key alone is not seen); an unpinned
// app's commit is "" (whatever is installed is fine).
[[nodiscard]] std::string remote_fingerprint(const std::string& url, bool gpg_verify);
[[nodiscard]] std::string flatpak_fingerprint(const std::string& remote, const std::string& branch,
                                              const std::string& commit,
                                              const Permissions& permissions);
[[nodiscard]] std::vector<Resource> desired_resources(const MachineConfig& config);

}  // namespace osup::machine
