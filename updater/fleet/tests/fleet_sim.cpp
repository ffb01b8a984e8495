#include "updater/fleet/tests/fleet_sim.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "format/channel.h"
#include "updater/fleet/etcd_reboot_slots.h"
#include "updater/fleet/fleet_member.h"
#include "updater/http.h"

namespace osup::fleet::sim {
namespace {

using clock = std::chrono::steady_clock;

// A thousand machines keep a thousand connections to etcd open.
void raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

struct Shared {
  const SimOptions& o;
  std::mutex m;
  SimResult result;
  std::atomic<int> starts = 0, finished = 0;
  std::atomic<uint64_t> requests = 0;
};

// The release this machine takes and its halt threshold: from the channel's index (the
// same choice `osup update` makes), or "2.0.0" with the options' threshold.
std::string pick_version(const SimOptions& o, const std::string& id, HealthThreshold& t) {
  t = o.threshold;
  if (o.channel_url.empty()) return "2.0.0";
  HttpOptions h;
  h.max_attempts = 10;
  const ChannelIndex idx = ChannelIndex::parse(http_get(o.channel_url + "index.json", 1u << 20, h));
  const ChannelRelease* r = pick_release(idx, "x86_64", "sim", "1.0.0", id);
  if (!r) return "";
  t = {r->halt_after_failures, r->halt_failure_percent};
  return r->version;
}

// One machine: pick the release, check its health, wait for a slot, "reboot", report.
void machine(Shared& s, int n) {
  const SimOptions& o = s.o;
  const std::string id = "machine-" + std::to_string(n);
  std::this_thread::sleep_for(
      std::chrono::duration<double>(o.start_spread_s * static_cast<double>(n % 997) / 997.0));
  EtcdClient etcd({o.endpoints, {}});
  EtcdRebootSlots slots(etcd, o.lease_ttl_s);
  RolloutHealth health(etcd, o.group);
  FleetMember member(slots, &health, {o.group, id, o.slots}, o.wait);
  std::string outcome, why;
  double waited = 0;
  try {
    HealthThreshold threshold;
    const std::string v = pick_version(o, id, threshold);
    why = v.empty() ? "no release" : member.check(v, threshold);
    if (why.empty()) why = member.begin(v);
    waited = member.last_wait().waited_s;
    if (why.empty()) {
      const bool fails = o.fail_starts.count(s.starts++) > 0;
      std::this_thread::sleep_for(std::chrono::duration<double>(fails ? o.fail_s : o.boot_s));
      if (fails)
        member.end_rolled_back(v, threshold);
      else
        member.end_good(v);
      outcome = fails ? "rolled-back" : "good";
    }
  } catch (const Error& e) {
    why = id + ": " + e.what();
    outcome = "error";
  }
  s.requests += etcd.requests();
  {
    std::lock_guard lock(s.m);
    SimResult& r = s.result;
    r.longest_wait_s = std::max(r.longest_wait_s, waited);
    if (outcome == "good") ++r.good;
    if (outcome == "rolled-back") ++r.rolled_back;
    if (outcome == "error") r.errors.push_back(why);
    if (outcome.empty()) ++r.refused, r.refusals.push_back(why);
  }
  const int done = ++s.finished;
  if (o.on_finish) o.on_finish(done);
}

}  // namespace

SimResult run_fleet(const SimOptions& o) {
  raise_fd_limit();
  Shared s{o};
  const auto t0 = clock::now();
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(o.machines));
  for (int i = 0; i < o.machines; ++i) threads.emplace_back([&s, i] { machine(s, i); });
  for (std::thread& t : threads) t.join();
  s.result.total_s = std::chrono::duration<double>(clock::now() - t0).count();
  s.result.requests = s.requests.load();
  return s.result;
}

History check_history(EtcdClient& etcd, const std::string& group, const std::string& version) {
  const std::string prefix = fleet_prefix(group);
  const int64_t until = etcd.put(prefix + "~history-end", "");
  History h;
  int held = 0, trying = 0;
  std::map<std::string, std::string> state;  // machine -> its record's value
  const std::string slots = slots_prefix(group), records = prefix + "releases/" + version + "/";
  const std::vector<EtcdEvent> events = etcd.history(prefix, 1, until);
  h.events = events.size();
  for (const EtcdEvent& e : events) {
    const std::string& k = e.kv.key;
    if (k.rfind(slots, 0) == 0) {
      if (e.deleted) --held;
      if (!e.deleted && e.kv.version == 1) ++held;  // created: a new holder
      h.max_held = std::max(h.max_held, held);
    } else if (k.rfind(records, 0) == 0) {
      std::string& before = state[k.substr(records.size())];
      const std::string now = e.deleted ? "" : e.kv.value;
      if (before == "trying") --trying;
      if (now == "trying") ++trying, ++h.trying_puts, h.last_trying_revision = e.kv.mod_revision;
      before = now;
      h.max_trying = std::max(h.max_trying, trying);
    } else if (k == prefix + "halted/" + version && !e.deleted && !h.halt_revision) {
      h.halt_revision = e.kv.mod_revision;
    }
  }
  return h;
}

}  // namespace osup::fleet::sim
