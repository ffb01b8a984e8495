#include "updater/fleet/fleet_member.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "base/fd.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace osup::fleet {

std::string FleetMember::check(const std::string& version, const HealthThreshold& t) {
  if (!health_) {
    // The publisher asked for a rollout that stops itself; a machine that cannot see the
    // failures must not join it blind.
    if (!t.halt_after_failures && !t.halt_failure_percent) return "";
    return "not starting " + version + ": the channel halts its rollout " + describe(t) +
           ", but this machine keeps no rollout health (FleetLock has no place for it); set "
           "fleet_health_endpoints to the etcd that keeps it (docs/fleet.md)";
  }
  try {
    return health_->refusal(version, t);
  } catch (const Error& e) {
    // Not a reason to stop here: begin() waits for etcd, and its `trying` record is
    // refused for a halted release anyway.
    if (log_) log_("cannot read the rollout health of " + version + " yet: " + e.what());
    return "";
  }
}

// `trying`, recorded only while the release is not halted; etcd failing here is retried
// a few times (the slot is held meanwhile). Throws when it stays unreachable.
bool FleetMember::record_start(const std::string& version) {
  double backoff = wait_.first_backoff_s;
  for (int attempt = 1;; ++attempt) {
    try {
      return health_->start(version, who_.machine);
    } catch (const Error&) {
      if (attempt >= 5) throw;
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, wait_.max_backoff_s);
    }
  }
}

std::string FleetMember::begin(const std::string& version) {
  if (health_) {
    try {
      health_->record(version, who_.machine, MachineState::waiting);
    } catch (const Error&) {  // only for `fleet status`; the wait below reports etcd's state
    }
  }
  wait_out_ = wait_for_slot(slots_, who_, wait_, log_);
  if (!wait_out_.answer.held) {
    std::string why = "no reboot slot of group " + who_.group + " came free in " +
                      std::to_string(static_cast<long>(wait_out_.waited_s)) + " s";
    if (!wait_out_.last_error.empty()) why += " (" + wait_out_.last_error + ")";
    return why + "; the update is tried again next time";
  }
  try {
    if (health_ && !record_start(version)) {
      // Halted while this machine waited: give the slot back untouched.
      slots_.release(who_);
      return "not starting " + version + ": its rollout in group " + who_.group +
             " was halted while this machine waited for a reboot slot";
    }
  } catch (const Error& e) {
    return std::string("cannot record the start of ") + version + " (" + e.what() +
           "); the slot's lease frees it, and the update is tried again next time";
  }
  return "";
}

void FleetMember::end_good(const std::string& version) {
  if (health_) health_->record(version, who_.machine, MachineState::good);
  slots_.release(who_);
}

void FleetMember::end_rolled_back(const std::string& version, const HealthThreshold& t) {
  if (health_) health_->record_failure(version, who_.machine, t);
  slots_.release(who_);
}

namespace {

std::string trial_path(const std::string& dir) { return (fs::path(dir) / "fleet.json").string(); }

json opt(const std::optional<int>& v) { return v ? json(*v) : json(nullptr); }

std::optional<int> opt_int(const json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) return std::nullopt;
  return j[k].get<int>();
}

}  // namespace

void save_trial(const std::string& state_dir, const FleetTrial& t) {
  fs::create_directories(state_dir);
  const json j{{"version", t.version},
               {"group", t.group},
               {"halt_after_failures", opt(t.threshold.halt_after_failures)},
               {"halt_failure_percent", opt(t.threshold.halt_failure_percent)},
               {"installed", t.installed}};
  atomic_write_file(trial_path(state_dir), j.dump(2) + "\n");
}

std::optional<FleetTrial> load_trial(const std::string& state_dir) {
  const std::string path = trial_path(state_dir);
  if (!fs::exists(path)) return std::nullopt;
  try {
    const json j = json::parse(read_text_file(path));
    return FleetTrial{j.at("version").get<std::string>(),
                      j.at("group").get<std::string>(),
                      {opt_int(j, "halt_after_failures"), opt_int(j, "halt_failure_percent")},
                      j.value("installed", false)};
  } catch (const json::exception& e) {
    fail(path + " is damaged (" + std::string(e.what()) + "); delete it to forget the trial");
  }
}

void clear_trial(const std::string& state_dir) {
  std::error_code ec;
  fs::remove(trial_path(state_dir), ec);
}

}  // namespace osup::fleet
