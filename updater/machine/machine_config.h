// The machine file (docs/machine.md): what a machine runs on top of its OS image: Flatpak
// apps, podman containers, and where its data is backed up. Parsed strictly: unknown
// fields are refused and every error names the field's path.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace osup::machine {

struct OsSection {
  std::string channel;
  std::optional<std::string> ca;
};

struct FlatpakRemote {
  std::string url;
  std::optional<std::string> gpg_key;  // a key file; absent with gpg_verify false
  bool gpg_verify = true;
};

// Permission overrides as flatpak takes them; an entry starting with '!' denies.
struct Permissions {
  std::vector<std::string> filesystems, devices, sockets, shares;
  bool operator==(const Permissions&) const = default;
};

struct FlatpakApp {
  std::string remote, branch = "stable";
  std::optional<std::string> commit;  // 64 hex: pins the installed version
  Permissions permissions;
};

struct Mount {
  std::string host, container;
  bool read_only = false;
};

struct Port {
  uint16_t host = 0, container = 0;
  std::string protocol = "tcp";  // tcp | udp
  std::string address;           // host address to bind, empty for all
};

struct Container {
  std::string image;
  std::optional<std::string> digest;  // "sha256:<64 hex>"
  std::vector<std::string> command;   // empty: the image's own
  std::vector<Mount> mounts;
  std::vector<Port> ports;
  std::map<std::string, std::string> env;
  bool autostart = true;
};

struct DataSection {
  std::string repository;
  std::optional<std::string> password_file, password_env;  // exactly one
  std::vector<std::string> paths;
};

struct MachineConfig {
  std::optional<OsSection> os;
  std::map<std::string, FlatpakRemote> remotes;
  std::map<std::string, FlatpakApp> flatpaks;
  std::map<std::string, Container> containers;
  std::optional<DataSection> data;
};

inline constexpr int kMachineFormat = 1;

// `what` names the document in errors (the file's name).
[[nodiscard]] MachineConfig parse_machine_config(const std::string& text, const std::string& what);
[[nodiscard]] MachineConfig read_machine_config(const std::string& path);

}  // namespace osup::machine
