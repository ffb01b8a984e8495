// What a machine file asks for, as a flat list of resources, each with a fingerprint of
// the configuration it is created from: a changed fingerprint means "recreate it".
#pragma once

#include <string>
#include <vector>

#include "updater/machine/machine_config.h"

namespace osup::machine {

// The kinds, in the order adds run (removals run in reverse: containers before their network).
enum class Kind { remote, flatpak, network, container };
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

[[nodiscard]] std::string container_fingerprint(const Container& c);
[[nodiscard]] std::vector<Resource> desired_resources(const MachineConfig& config);

}  // namespace osup::machine
