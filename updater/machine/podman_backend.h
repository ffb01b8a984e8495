// Containers and their shared network with the real podman (rootful). Each container
// carries its fingerprint as the label io.osup.config; autostart is a systemd unit
// osup-container-NAME.service (podman start --attach), enabled in multi-user.target.
#pragma once

#include <string>

#include "updater/machine/backend.h"

namespace osup::machine {

struct PodmanOptions {
  std::string unit_dir = "/etc/systemd/system";
  // Tell systemd (daemon-reload, start/stop units); false: start containers with podman
  // itself (no systemd running: tests, an image being prepared).
  bool systemd = false;
  int stop_seconds = 5;
};

// systemd is running (/run/systemd/system exists).
[[nodiscard]] bool systemd_running();

class PodmanBackend : public MachineBackend {
 public:
  explicit PodmanBackend(PodmanOptions options) : o_(std::move(options)) {}
  [[nodiscard]] std::vector<Kind> kinds() const override {
    return {Kind::network, Kind::container};
  }
  [[nodiscard]] std::map<std::string, std::string> observe(Kind kind) override;
  void create(const Resource& r, const MachineConfig& config) override;
  void update(const Resource& r, const MachineConfig& config) override;
  void remove(Kind kind, const std::string& name) override;

  // The containers osup made, each as the machine file describes it (from its labels);
  // ones it cannot describe are named in NOTES.
  [[nodiscard]] std::map<std::string, Container> exported_containers(
      std::vector<std::string>& notes);

  // The unit file that starts container NAME at boot.
  [[nodiscard]] std::string unit_path(const std::string& name) const;

 private:
  void create_container(const std::string& name, const Container& c, const std::string& fp);
  void remove_container(const std::string& name);
  void install_unit(const std::string& name);
  PodmanOptions o_;
};

// The `podman create` arguments for container NAME (after "podman create").
[[nodiscard]] std::vector<std::string> podman_create_args(const std::string& name,
                                                          const Container& c,
                                                          const std::string& fingerprint);

}  // namespace osup::machine
