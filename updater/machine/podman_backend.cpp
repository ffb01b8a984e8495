#include "updater/machine/podman_backend.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "updater/machine/disk_full.h"
#include "updater/machine/machine_config_json.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace osup::machine {
namespace {

constexpr const char* kLabel = "io.osup.config";
// The container's entry of the machine file, as JSON: what osup export writes back.
constexpr const char* kSpecLabel = "io.osup.spec";

RunResult podman(std::vector<std::string> args) {
  args.insert(args.begin(), "podman");
  RunResult r = run(args);
  if (r.exit_code != 0 && says_disk_full(r.err))
    fail("podman " + args[1] +
         " ran out of disk space (no space left on device); free space "
         "for podman's storage (/var/lib/containers, the data partition) and run osup apply "
         "again");
  if (r.exit_code != 0)
    fail("podman failed (exit " + std::to_string(r.exit_code) + "): " + last_line(r.err));
  return r;
}

json podman_json(std::vector<std::string> args) {
  const std::string out = podman(std::move(args)).out;
  json j = json::parse(out.empty() ? "[]" : out, nullptr, false);
  if (j.is_discarded() || !j.is_array()) fail("podman printed something other than a JSON list");
  return j;
}

std::string label_of(const json& labels) {
  if (!labels.is_object() || !labels.contains(kLabel) || !labels[kLabel].is_string()) return "";
  return labels[kLabel].get<std::string>();
}

std::string unit_text(const std::string& podman_path, const std::string& name, int stop_seconds) {
  return "# Written by osup apply for the machine file's container '" + name +
         "'; osup replaces it.\n"
         "[Unit]\n"
         "Description=osup container " +
         name +
         "\n"
         "Wants=network-online.target\n"
         "After=network-online.target\n"
         "\n[Service]\n"
         "ExecStart=" +
         podman_path + " start --attach " + name +
         "\n"
         "ExecStop=" +
         podman_path + " stop --time " + std::to_string(stop_seconds) + " " + name +
         "\n"
         "Restart=on-failure\n"
         "\n[Install]\n"
         "WantedBy=multi-user.target\n";
}

// "registry:5000/name:tag" -> "registry:5000/name": a ':' after the last '/' starts the tag.
std::string image_name(const std::string& image) {
  const size_t colon = image.rfind(':'), slash = image.rfind('/');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return image;
  return image.substr(0, colon);
}

}  // namespace

bool systemd_running() { return fs::exists("/run/systemd/system"); }

std::vector<std::string> podman_create_args(const std::string& name, const Container& c,
                                            const std::string& fingerprint) {
  std::vector<std::string> a = {
      "--name",    name,
      "--network", kNetworkName,
      "--label",   std::string(kLabel) + "=" + fingerprint,
      "--label",   std::string(kSpecLabel) + "=" + container_json(c).dump()};
  for (const Mount& m : c.mounts)
    a.insert(a.end(), {"--volume", m.host + ":" + m.container + (m.read_only ? ":ro" : "")});
  for (const Port& p : c.ports)
    a.insert(a.end(),
             {"--publish", (p.address.empty() ? "" : p.address + ":") + std::to_string(p.host) +
                               ":" + std::to_string(p.container) + "/" + p.protocol});
  for (const auto& [k, v] : c.env) a.insert(a.end(), {"--env", k + "=" + v});
  // A pinned digest is part of the reference: podman then runs exactly that image.
  a.push_back(c.digest ? image_name(c.image) + "@" + *c.digest : c.image);
  a.insert(a.end(), c.command.begin(), c.command.end());
  return a;
}

std::map<std::string, std::string> PodmanBackend::observe(Kind kind) {
  std::map<std::string, std::string> out;
  if (kind == Kind::network) {
    for (const json& n : podman_json({"network", "ls", "--format", "json"}))
      out[n.value("name", "")] = label_of(n.value("labels", json()));
  } else {
    for (const json& c : podman_json({"ps", "--all", "--format", "json"}))
      if (c.contains("Names") && c["Names"].is_array() && !c["Names"].empty())
        out[c["Names"][0].get<std::string>()] = label_of(c.value("Labels", json()));
  }
  out.erase("");
  return out;
}

std::map<std::string, Container> PodmanBackend::exported_containers(
    std::vector<std::string>& notes) {
  std::map<std::string, Container> out;
  for (const json& c : podman_json({"ps", "--all", "--format", "json"})) {
    if (!c.contains("Names") || !c["Names"].is_array() || c["Names"].empty()) continue;
    const std::string name = c["Names"][0].get<std::string>();
    const json labels = c.value("Labels", json());
    const std::string fp = label_of(labels);
    if (fp.empty()) continue;  // not osup's
    const json spec = labels.is_object() ? labels.value(kSpecLabel, json()) : json();
    std::optional<Container> c_spec;
    if (spec.is_string()) {
      const json entry = json::parse(spec.get<std::string>(), nullptr, false);
      try {
        const json file = {{"format", kMachineFormat}, {"containers", {{name, entry}}}};
        if (!entry.is_discarded())
          c_spec = parse_machine_config(file.dump(), "container " + name).containers.at(name);
      } catch (const Error&) {
        c_spec.reset();  // a label that does not parse: named in NOTES below
      }
    }
    if (!c_spec || container_fingerprint(*c_spec) != fp) {
      notes.push_back("container '" + name +
                      "' was made by an older osup or changed by hand: not exported; apply its "
                      "file again first");
      continue;
    }
    out[name] = *c_spec;
  }
  return out;
}

std::string PodmanBackend::unit_path(const std::string& name) const {
  return o_.unit_dir + "/osup-container-" + name + ".service";
}

void PodmanBackend::install_unit(const std::string& name) {
  const std::string unit = unit_path(name);
  const fs::path wants = fs::path(o_.unit_dir) / "multi-user.target.wants";
  fs::create_directories(wants);
  atomic_write_file(unit, unit_text(require_tool("podman"), name, o_.stop_seconds));
  const fs::path link = wants / fs::path(unit).filename();
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(fs::path("..") / fs::path(unit).filename(), link);
  if (o_.systemd) {
    run_checked({"systemctl", "daemon-reload"});
    run_checked({"systemctl", "start", fs::path(unit).filename().string()});
  } else {
    podman({"start", name});
  }
}

void PodmanBackend::create_container(const std::string& name, const Container& c,
                                     const std::string& fp) {
  for (const Mount& m : c.mounts) fs::create_directories(m.host);
  std::vector<std::string> args = {"create"};
  const std::vector<std::string> rest = podman_create_args(name, c, fp);
  args.insert(args.end(), rest.begin(), rest.end());
  podman(args);
  if (!c.autostart) return;
  try {
    install_unit(name);
  } catch (const Error&) {
    remove_container(name);  // not left looking done: the next apply creates it again
    throw;
  }
}

void PodmanBackend::remove_container(const std::string& name) {
  const std::string unit = unit_path(name);
  const std::string unit_name = fs::path(unit).filename().string();
  if (o_.systemd && fs::exists(unit)) (void)run({"systemctl", "stop", unit_name});
  std::error_code ec;
  fs::remove(fs::path(o_.unit_dir) / "multi-user.target.wants" / unit_name, ec);
  fs::remove(unit, ec);
  if (o_.systemd) (void)run({"systemctl", "daemon-reload"});
  podman({"rm", "--force", "--ignore", "--time", std::to_string(o_.stop_seconds), name});
}

void PodmanBackend::create(const Resource& r, const MachineConfig& config) {
  if (r.kind == Kind::network) {
    podman({"network", "create", "--label", std::string(kLabel) + "=" + r.fingerprint, r.name});
    return;
  }
  create_container(r.name, config.containers.at(r.name), r.fingerprint);
}

void PodmanBackend::update(const Resource& r, const MachineConfig& config) {
  remove(r.kind, r.name);
  create(r, config);
}

void PodmanBackend::remove(Kind kind, const std::string& name) {
  if (kind == Kind::network) {
    const auto now = observe(Kind::network);
    if (now.count(name)) podman({"network", "rm", name});
    return;
  }
  remove_container(name);
}

}  // namespace osup::machine
