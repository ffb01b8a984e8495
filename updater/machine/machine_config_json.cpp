#include "updater/machine/machine_config_json.h"

using nlohmann::json;

namespace osup::machine {
namespace {

json permissions_json(const Permissions& p) {
  json j = json::object();
  const auto put = [&](const char* key, const std::vector<std::string>& v) {
    if (!v.empty()) j[key] = v;
  };
  put("filesystems", p.filesystems);
  put("devices", p.devices);
  put("sockets", p.sockets);
  put("shares", p.shares);
  return j;
}

json apps_json(const MachineConfig& c) {
  json remotes = json::object(), flatpaks = json::object();
  for (const auto& [name, r] : c.remotes) {
    json j = {{"url", r.url}};
    if (r.gpg_key) j["gpg_key"] = *r.gpg_key;
    if (!r.gpg_verify) j["gpg_verify"] = false;
    remotes[name] = j;
  }
  for (const auto& [id, a] : c.flatpaks) {
    json j = {{"remote", a.remote}, {"branch", a.branch}};
    if (a.commit) j["commit"] = *a.commit;
    const json p = permissions_json(a.permissions);
    if (!p.empty()) j["permissions"] = p;
    flatpaks[id] = j;
  }
  return {{"remotes", remotes}, {"flatpaks", flatpaks}};
}

}  // namespace

json container_json(const Container& c) {
  json j = {{"image", c.image}};
  if (c.digest) j["digest"] = *c.digest;
  if (!c.command.empty()) j["command"] = c.command;
  if (!c.mounts.empty()) {
    j["mounts"] = json::array();
    for (const Mount& m : c.mounts)
      j["mounts"].push_back(
          {{"host", m.host}, {"container", m.container}, {"read_only", m.read_only}});
  }
  if (!c.ports.empty()) {
    j["ports"] = json::array();
    for (const Port& p : c.ports) {
      json pj = {{"host", p.host}, {"container", p.container}, {"protocol", p.protocol}};
      if (!p.address.empty()) pj["address"] = p.address;
      j["ports"].push_back(pj);
    }
  }
  if (!c.env.empty()) j["env"] = c.env;
  j["autostart"] = c.autostart;
  return j;
}

json machine_config_json(const MachineConfig& config) {
  json j = {{"format", kMachineFormat}};
  if (config.os) {
    j["os"] = {{"channel", config.os->channel}};
    if (config.os->ca) j["os"]["ca"] = *config.os->ca;
  }
  if (!config.remotes.empty() || !config.flatpaks.empty()) j["apps"] = apps_json(config);
  if (!config.containers.empty()) {
    j["containers"] = json::object();
    for (const auto& [name, c] : config.containers) j["containers"][name] = container_json(c);
  }
  if (const auto& d = config.data) {
    j["data"] = {{"repository", d->repository}, {"paths", d->paths}};
    if (d->password_file) j["data"]["password_file"] = *d->password_file;
    if (d->password_env) j["data"]["password_env"] = *d->password_env;
  }
  return j;
}

}  // namespace osup::machine
