// The machine file's os section in /etc/osup/update.conf: its channel and ca lines are
// set, every other line (timer, fleet) is kept. Dropping the section leaves the file as it
// is: the machine keeps updating from where it did.
#pragma once

#include <string>

#include "updater/machine/backend.h"

namespace osup::machine {

class OsBackend : public MachineBackend {
 public:
  // DESIRED: the file being applied; update.conf is seen as there only when it already
  // says what DESIRED's os section says (else the plan adds it), so a hand-written
  // update.conf is updated rather than refused.
  OsBackend(std::string update_conf, const MachineConfig* desired)
      : path_(std::move(update_conf)), desired_(desired) {}
  [[nodiscard]] std::vector<Kind> kinds() const override { return {Kind::os}; }
  [[nodiscard]] std::map<std::string, std::string> observe(Kind kind) override;
  void create(const Resource& r, const MachineConfig& config) override;
  void update(const Resource& r, const MachineConfig& config) override { create(r, config); }
  void remove(Kind /*kind*/, const std::string& /*name*/) override {}

 private:
  std::string path_;
  const MachineConfig* desired_;
};

// TEXT (an update.conf) with its channel and ca lines replaced by OS's (ca removed when OS
// has none); other lines as they were.
[[nodiscard]] std::string with_os_section(const std::string& text, const OsSection& os);

}  // namespace osup::machine
