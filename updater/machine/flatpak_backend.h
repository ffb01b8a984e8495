// Flatpak remotes and apps in the system installation (/var/lib/flatpak, on the data
// partition; $FLATPAK_SYSTEM_DIR in tests) with the real flatpak. They carry no label, so
// their fingerprints are computed from what flatpak reports: URL and signature checking of
// a remote; origin, branch, commit (when the file pins one) and overrides of an app.
#pragma once

#include <string>
#include <vector>

#include "updater/machine/backend.h"

namespace osup::machine {

struct InstalledFlatpak {
  std::string id, branch, origin, commit;
  Permissions permissions;  // the system overrides (`flatpak override --system --show`)
};

struct ConfiguredRemote {
  std::string name, url;
  bool gpg_verify = true;
};

class FlatpakBackend : public MachineBackend {
 public:
  // DESIRED (may be null: export) says which apps are pinned: only their commit is compared.
  explicit FlatpakBackend(const MachineConfig* desired) : desired_(desired) {}
  [[nodiscard]] std::vector<Kind> kinds() const override { return {Kind::remote, Kind::flatpak}; }
  [[nodiscard]] std::map<std::string, std::string> observe(Kind kind) override;
  void create(const Resource& r, const MachineConfig& config) override;
  void update(const Resource& r, const MachineConfig& config) override;
  void remove(Kind kind, const std::string& name) override;
  // Every remote the apps to make come from is reachable and has their refs (and pinned
  // commits), tried in a throwaway installation so nothing is changed.
  void check(const std::vector<Resource>& to_make, const MachineConfig& config) override;

  [[nodiscard]] std::vector<ConfiguredRemote> remotes() const;
  [[nodiscard]] std::vector<InstalledFlatpak> apps() const;

 private:
  void remove_remote(const std::string& name);
  const MachineConfig* desired_;
};

// "app/ID/ARCH/BRANCH" for this machine's default architecture.
[[nodiscard]] std::string flatpak_app_ref(const std::string& id, const std::string& branch);

}  // namespace osup::machine
