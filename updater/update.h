// `osup update`: the newest release a channel offers this machine, fetched as a delta
// from the running slot when the channel has one (else the full bundle), downloaded
// resumably into the cache directory and installed through the same verified path as
// `osup switch`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/progress.h"
#include "boot/boot_control.h"
#include "format/channel.h"
#include "format/signature.h"
#include "updater/disk.h"
#include "updater/http.h"
#include "updater/install.h"

namespace osup {

struct UpdateOptions {
  std::string channel_url;
  std::string state_dir = "/var/lib/osup";    // newest index serial seen
  std::string cache_dir = "/var/cache/osup";  // downloads, kept across runs until installed
  std::string machine_id;                     // staged rollout bucket
  std::optional<uint64_t> now;                // seconds since the epoch; tests fix it
  bool check_only = false;
  bool allow_downgrade = false;
  ProgressMode progress = ProgressMode::automatic;
  HttpOptions http;
  // Fleets (updater/fleet/): check_release sees the chosen release before any download,
  // before_install after the download, before the slot is written and made the next
  // boot (a reboot slot is taken there). Each returns "" to go on, else why not; the
  // update then stops with nothing installed.
  std::function<std::string(const ChannelRelease&)> check_release, before_install;
};

struct UpdatePlan {
  std::string current;  // running version
  std::string channel;
  uint64_t serial = 0;
  std::optional<ChannelRelease> release;  // nullopt: up to date
  bool delta = false;
  ChannelFile file;      // what will be downloaded
  uint64_t already = 0;  // bytes of it already in the cache from an earlier run
};

struct UpdateOutcome {
  UpdatePlan plan;
  bool installed = false;
  std::optional<InstallResult> install;
  std::string fallback;  // why the delta was not used, when it was tried and failed
  std::string refused;   // why a fleet hook stopped the update
};

// `announce` sees the plan before any download starts.
UpdateOutcome run_update(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                         const UpdateOptions& o,
                         const std::function<void(const UpdatePlan&)>& announce);

// /etc/machine-id's content, or "" when there is none.
[[nodiscard]] std::string read_machine_id(const std::string& path = "/etc/machine-id");

}  // namespace osup
