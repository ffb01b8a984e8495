#include "updater/machine/resources.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "format/sha256.h"

using nlohmann::json;

namespace osup::machine {
namespace {

// SHA-256 of a canonical JSON form (nlohmann sorts object keys), so equal configurations
// give equal fingerprints whatever the order of the file's fields.
std::string fingerprint(const json& j) {
  const Digest d = sha256(j.dump());
  return to_hex(d);
}

// Sorted: flatpak keeps overrides in its own order, and the order means nothing.
json sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

json permissions_json(const Permissions& p) {
  return {{"filesystems", sorted(p.filesystems)},
          {"devices", sorted(p.devices)},
          {"sockets", sorted(p.sockets)},
          {"shares", sorted(p.shares)}};
}

}  // namespace

std::string to_string(Kind k) {
  switch (k) {
    case Kind::os:
      return "os";
    case Kind::remote:
      return "remote";
    case Kind::flatpak:
      return "flatpak";
    case Kind::network:
      return "network";
    case Kind::container:
      return "container";
  }
  return "?";
}

const std::vector<Kind>& all_kinds() {
  static const std::vector<Kind> kinds = {Kind::os, Kind::remote, Kind::flatpak, Kind::network,
                                          Kind::container};
  return kinds;
}

std::string container_fingerprint(const Container& c) {
  json mounts = json::array(), ports = json::array();
  for (const Mount& m : c.mounts)
    mounts.push_back({{"host", m.host}, {"container", m.container}, {"ro", m.read_only}});
  for (const Port& p : c.ports)
    ports.push_back({{"host", p.host},
                     {"container", p.container},
                     {"protocol", p.protocol},
                     {"address", p.address}});
  return fingerprint({{"image", c.image},
                      {"digest", c.digest.value_or("")},
                      {"command", c.command},
                      {"mounts", mounts},
                      {"ports", ports},
                      {"env", c.env},
                      {"autostart", c.autostart},
                      {"network", kNetworkName}});
}

std::string os_fingerprint(const std::string& channel, const std::string& ca) {
  return fingerprint({{"channel", channel}, {"ca", ca}});
}

std::string remote_fingerprint(const std::string& url, bool gpg_verify) {
  return fingerprint({{"url", url}, {"gpg_verify", gpg_verify}});
}

std::string flatpak_fingerprint(const std::string& remote, const std::string& branch,
                                const std::string& commit, const Permissions& permissions) {
  return fingerprint({{"remote", remote},
                      {"branch", branch},
                      {"commit", commit},
                      {"permissions", permissions_json(permissions)}});
}

std::vector<Resource> desired_resources(const MachineConfig& config) {
  std::vector<Resource> out;
  if (config.os)
    out.push_back({Kind::os, kOsResourceName,
                   os_fingerprint(config.os->channel, config.os->ca.value_or(""))});
  for (const auto& [name, r] : config.remotes)
    out.push_back({Kind::remote, name, remote_fingerprint(r.url, r.gpg_verify)});
  for (const auto& [id, a] : config.flatpaks)
    out.push_back({Kind::flatpak, id,
                   flatpak_fingerprint(a.remote, a.branch, a.commit.value_or(""), a.permissions)});
  if (!config.containers.empty())
    out.push_back({Kind::network, kNetworkName, fingerprint({{"network", kNetworkName}})});
  for (const auto& [name, c] : config.containers)
    out.push_back({Kind::container, name, container_fingerprint(c)});
  return out;
}

}  // namespace osup::machine
