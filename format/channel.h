// The channel index: the signed list of releases a static HTTP directory offers
// (docs/channel.md). `osup-build publish` writes it, `osup update` reads it. A serial that
// only grows and an expiry defend against an old index being replayed (rollback) or a
// current one being withheld forever (freeze).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osup {

// A file in the channel directory, named by a path relative to the index.
struct ChannelFile {
  std::string path;  // "bundles/minimal-2.0.0-x86_64.osup"
  uint64_t size = 0;
  std::string sha256;  // hex
  bool operator==(const ChannelFile&) const = default;
};

struct ChannelDelta {
  std::string from_version;
  std::string from_root_hash;  // the source slot this delta applies to
  ChannelFile file;
  bool operator==(const ChannelDelta&) const = default;
};

struct ChannelRelease {
  std::string name, version, arch, compatible;
  uint64_t created = 0;
  std::string root_hash;      // verity root hash of the release's root (from its manifest)
  int rollout_percent = 100;  // 0-100: the share of machines offered this release
  // Fleets (docs/fleet.md): machines stop starting this release once this many of them
  // rolled back, or once this share (1-100 %) of those that started it did. Unset: no limit.
  std::optional<int> halt_after_failures, halt_failure_percent;
  ChannelFile bundle;
  std::vector<ChannelDelta> deltas;
  bool operator==(const ChannelRelease&) const = default;
};

struct ChannelIndex {
  static constexpr int kFormat = 1;
  static constexpr const char* kFile = "index.json";
  static constexpr const char* kSignatureFile = "index.json.sig";

  int format = kFormat;
  std::string channel;   // its name ("stable"): devices keep the newest serial per channel
  uint64_t serial = 0;   // grows with every publish
  uint64_t expires = 0;  // seconds since the epoch
  std::vector<ChannelRelease> releases;  // oldest first

  // Deterministic bytes (sorted keys, indent 2, trailing newline); validates first.
  [[nodiscard]] std::string to_json() const;
  // Strict like the manifest: unknown or missing fields and unsafe paths are errors.
  [[nodiscard]] static ChannelIndex parse(std::string_view json);
  void validate() const;
  bool operator==(const ChannelIndex&) const = default;
};

// Seconds since the epoch: `fixed` when set (tests), else the clock. Expiries are in these.
[[nodiscard]] uint64_t channel_time(std::optional<uint64_t> fixed);

// Staged rollout: the machine's bucket (0-99) for a release, stable for a given machine id
// and release, independent between releases. A release at N% goes to buckets below N, so
// raising N only adds machines.
[[nodiscard]] int rollout_bucket(std::string_view machine_id, std::string_view release_version);

// Of the releases for `arch` and `compatible` newer than `running_version` whose rollout
// admits this machine, the newest; nullptr when none.
[[nodiscard]] const ChannelRelease* pick_release(const ChannelIndex& index, std::string_view arch,
                                                 std::string_view compatible,
                                                 std::string_view running_version,
                                                 std::string_view machine_id);

// The delta of `release` whose source is the slot with root hash `from_root_hash`.
[[nodiscard]] const ChannelDelta* find_delta(const ChannelRelease& release,
                                             std::string_view from_root_hash);

}  // namespace osup
