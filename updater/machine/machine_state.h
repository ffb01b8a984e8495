// What osup installed from machine files: per kind of resource, the names it created and
// the fingerprint of the configuration each was created from. Kept on the data partition
// so it survives OS switches; removal only ever touches names recorded here.
#pragma once

#include <map>
#include <string>

namespace osup::machine {

struct MachineState {
  // kind ("network", "container", ...) -> name -> fingerprint ("" while being created)
  std::map<std::string, std::map<std::string, std::string>> installed;
  bool operator==(const MachineState&) const = default;
};

inline constexpr const char* kMachineStatePath = "/var/lib/osup/machine-state.json";

// A missing file is an empty record; a damaged one is an error naming it.
[[nodiscard]] MachineState read_machine_state(const std::string& path);
// Crash-safe (temp file, fsync, rename); creates the directory.
void write_machine_state(const std::string& path, const MachineState& state);

}  // namespace osup::machine
