// One backend per tool that installs resources (podman, flatpak): it says what
// exists and creates or removes one resource at a time. `apply` drives them from a plan.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "updater/machine/machine_config.h"
#include "updater/machine/resources.h"

namespace osup::machine {

class MachineBackend {
 public:
  virtual ~MachineBackend() = default;
  [[nodiscard]] virtual std::vector<Kind> kinds() const = 0;
  // What exists of KIND now: name -> the fingerprint it carries ("" when it cannot carry one).
  [[nodiscard]] virtual std::map<std::string, std::string> observe(Kind kind) = 0;
  // Creates R as CONFIG describes it; R does not exist.
  virtual void create(const Resource& r, const MachineConfig& config) = 0;
  // Brings an existing R to CONFIG's description (recreating it where the tool must).
  virtual void update(const Resource& r, const MachineConfig& config) = 0;
  // Removes what osup created under NAME; nothing when it is already gone.
  virtual void remove(Kind kind, const std::string& name) = 0;
  // Called with the resources of its kinds that the plan adds or updates, before anything
  // changes: throws one line when one of them cannot be made (an app its remote lacks).
  virtual void check(const std::vector<Resource>& /*to_make*/, const MachineConfig& /*config*/) {}
};

}  // namespace osup::machine
