#include "format/channel.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "format/json_fields.h"
#include "format/manifest.h"
#include "format/sha256.h"

namespace osup {
namespace {

using json = nlohmann::json;
constexpr std::string_view kDoc = "channel index";

[[noreturn]] void field_error(const std::string& field, const std::string& rule) {
  json_field_error(kDoc, field, rule);
}

// Relative, plain components only: a device joins it to the channel URL, so it must never
// climb out of the channel or name another host.
void check_path(const std::string& field, const std::string& path) {
  bool ok =
      !path.empty() && path.size() <= 255 && path.front() != '/' && all_of_chars(path, "._+-/");
  for (size_t start = 0; ok && start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view part(path.data() + start, end - start);
    ok = !part.empty() && part != "." && part != "..";
    start = end + 1;
  }
  if (!ok)
    field_error(field,
                "must be a relative path of letters, digits, . _ + - (no '..', no "
                "empty part)");
}

void check_name(const std::string& field, const std::string& v, std::string_view extra,
                size_t max) {
  if (v.empty() || v.size() > max || !all_of_chars(v, extra))
    field_error(field,
                "must be 1-" + std::to_string(max) + " letters, digits or " + std::string(extra));
}

void check_hex(const std::string& field, const std::string& v) { check_sha256_hex(kDoc, field, v); }

void validate_file(const std::string& f, const ChannelFile& file) {
  check_path(f + ".path", file.path);
  if (file.size == 0) field_error(f + ".size", "must not be 0");
  check_hex(f + ".sha256", file.sha256);
}

json file_json(const ChannelFile& f) {
  return json{{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}};
}

ChannelFile parse_file(const json& j, const std::string& prefix) {
  JsonFields f(j, std::string(kDoc), prefix);
  ChannelFile out{f.str("path"), f.u64("size"), f.sha256_hex("sha256")};
  f.done();
  return out;
}

ChannelRelease parse_release(const json& j, const std::string& prefix) {
  JsonFields f(j, std::string(kDoc), prefix);
  ChannelRelease r;
  r.name = f.str("name");
  r.version = f.str("version");
  r.arch = f.str("arch");
  r.compatible = f.str("compatible");
  r.created = f.u64("created");
  r.root_hash = f.sha256_hex("root_hash");
  r.rollout_percent = f.small_int("rollout_percent");
  if (f.has("halt_after_failures")) r.halt_after_failures = f.small_int("halt_after_failures");
  if (f.has("halt_failure_percent")) r.halt_failure_percent = f.small_int("halt_failure_percent");
  r.bundle = parse_file(f.get("bundle"), f.name("bundle"));
  const json& ds = f.get("deltas");
  if (!ds.is_array()) field_error(f.name("deltas"), "must be an array");
  for (size_t i = 0; i < ds.size(); ++i) {
    const std::string name = f.name("deltas[" + std::to_string(i) + "]");
    JsonFields d(ds[i], std::string(kDoc), name);
    ChannelDelta delta{d.str("from_version"), d.sha256_hex("from_root_hash"),
                       parse_file(d.get("file"), d.name("file"))};
    d.done();
    r.deltas.push_back(std::move(delta));
  }
  f.done();
  return r;
}

}  // namespace

void ChannelIndex::validate() const {
  check_format(kDoc, format, kFormat);
  check_name("channel", channel, "._-", 64);
  if (serial == 0) field_error("serial", "must be at least 1");
  if (expires == 0) field_error("expires", "must be set");
  for (size_t i = 0; i < releases.size(); ++i) {
    const ChannelRelease& r = releases[i];
    const std::string f = "releases[" + std::to_string(i) + "]";
    check_name(f + ".name", r.name, "._-", 64);
    check_name(f + ".version", r.version, ".+~_-", 64);
    if (r.arch != "x86_64" && r.arch != "aarch64")
      field_error(f + ".arch", "must be x86_64 or aarch64");
    check_name(f + ".compatible", r.compatible, "._+-:,@", 128);
    check_hex(f + ".root_hash", r.root_hash);
    if (r.rollout_percent < 0 || r.rollout_percent > 100)
      field_error(f + ".rollout_percent", "must be 0-100");
    if (r.halt_after_failures && (*r.halt_after_failures < 1 || *r.halt_after_failures > 1000000))
      field_error(f + ".halt_after_failures", "must be 1 or more");
    if (r.halt_failure_percent && (*r.halt_failure_percent < 1 || *r.halt_failure_percent > 100))
      field_error(f + ".halt_failure_percent", "must be 1-100");
    validate_file(f + ".bundle", r.bundle);
    for (size_t k = 0; k < r.deltas.size(); ++k) {
      const ChannelDelta& d = r.deltas[k];
      const std::string df = f + ".deltas[" + std::to_string(k) + "]";
      check_name(df + ".from_version", d.from_version, ".+~_-", 64);
      check_hex(df + ".from_root_hash", d.from_root_hash);
      validate_file(df + ".file", d.file);
    }
    for (size_t k = 0; k < i; ++k)
      if (releases[k].version == r.version && releases[k].arch == r.arch &&
          releases[k].compatible == r.compatible)
        field_error(f + ".version", "repeats release " + std::to_string(k) + " (" + r.version +
                                        ", " + r.arch + ")");
  }
}

std::string ChannelIndex::to_json() const {
  validate();
  json rs = json::array();
  for (const ChannelRelease& r : releases) {
    json ds = json::array();
    for (const ChannelDelta& d : r.deltas)
      ds.push_back({{"from_version", d.from_version},
                    {"from_root_hash", d.from_root_hash},
                    {"file", file_json(d.file)}});
    rs.push_back({{"name", r.name},
                  {"version", r.version},
                  {"arch", r.arch},
                  {"compatible", r.compatible},
                  {"created", r.created},
                  {"root_hash", r.root_hash},
                  {"rollout_percent", r.rollout_percent},
                  {"bundle", file_json(r.bundle)},
                  {"deltas", ds}});
    if (r.halt_after_failures) rs.back()["halt_after_failures"] = *r.halt_after_failures;
    if (r.halt_failure_percent) rs.back()["halt_failure_percent"] = *r.halt_failure_percent;
  }
  json j{{"format", format},
         {"channel", channel},
         {"serial", serial},
         {"expires", expires},
         {"releases", rs}};
  return j.dump(2) + "\n";
}

ChannelIndex ChannelIndex::parse(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("channel index is not valid JSON: " + std::string(e.what()));
  }
  JsonFields f(j, std::string(kDoc), "");
  ChannelIndex idx;
  idx.format = f.small_int("format");
  if (idx.format > kFormat) check_format(kDoc, idx.format, kFormat);  // before unknown fields
  idx.channel = f.str("channel");
  idx.serial = f.u64("serial");
  idx.expires = f.u64("expires");
  const json& rs = f.get("releases");
  if (!rs.is_array()) field_error("releases", "must be an array");
  for (size_t i = 0; i < rs.size(); ++i)
    idx.releases.push_back(parse_release(rs[i], "releases[" + std::to_string(i) + "]"));
  f.done();
  idx.validate();
  return idx;
}

uint64_t channel_time(std::optional<uint64_t> fixed) {
  if (fixed) return *fixed;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

int rollout_bucket(std::string_view machine_id, std::string_view release_version) {
  // Domain-separated so the bucket is independent of other uses of the machine id, and
  // per release so the same machines are not always the first to take a release.
  std::string input = "osup-rollout-v1";
  input += '\0';
  input += machine_id;
  input += '\0';
  input += release_version;
  const Digest d = sha256(input);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | d[static_cast<size_t>(i)];
  return static_cast<int>(v % 100);
}

const ChannelRelease* pick_release(const ChannelIndex& index, std::string_view arch,
                                   std::string_view compatible, std::string_view running_version,
                                   std::string_view machine_id) {
  const ChannelRelease* best = nullptr;
  for (const ChannelRelease& r : index.releases) {
    if (r.arch != arch || r.compatible != compatible) continue;
    if (compare_versions(r.version, running_version) <= 0) continue;
    if (rollout_bucket(machine_id, r.version) >= r.rollout_percent) continue;
    if (!best || compare_versions(r.version, best->version) > 0) best = &r;
  }
  return best;
}

const ChannelDelta* find_delta(const ChannelRelease& release, std::string_view from_root_hash) {
  for (const ChannelDelta& d : release.deltas)
    if (d.from_root_hash == from_root_hash) return &d;
  return nullptr;
}

}  // namespace osup
