#include "updater/machine/resources.h"

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

json permissions_json(const Permissions& p) {
  return {{"filesystems", p.filesystems},
          {"devices", p.devices},
          {"sockets", p.sockets},
          {"shares", p.shares}};
}

}  // namespace

std::string to_string(Kind k) {
  switch (k) {
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
  static const std::vector<Kind> kinds = {Kind::remote, Kind::flatpak, Kind::network,
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

std::vector<Resource> desired_resources(const MachineConfig& config) {
  std::vector<Resource> out;
  for (const auto& [name, r] : config.remotes)
    out.push_back(
        {Kind::remote, name,
         fingerprint(
             {{"url", r.url}, {"gpg_key", r.gpg_key.value_or("")}, {"gpg_verify", r.gpg_verify}})});
  for (const auto& [id, a] : config.flatpaks)
    out.push_back({Kind::flatpak, id,
                   fingerprint({{"remote", a.remote},
                                {"branch", a.branch},
                                {"commit", a.commit.value_or("")},
                                {"permissions", permissions_json(a.permissions)}})});
  if (!config.containers.empty())
    out.push_back({Kind::network, kNetworkName, fingerprint({{"network", kNetworkName}})});
  for (const auto& [name, c] : config.containers)
    out.push_back({Kind::container, name, container_fingerprint(c)});
  return out;
}

}  // namespace osup::machine
