// `osup-build publish`: adds a release to a channel directory that any static HTTP server
// can serve (docs/channel.md): the bundle, deltas from recent releases, a signed index.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "builder/publish/make_delta.h"
#include "format/channel.h"

namespace osup::build {

struct PublishOptions {
  std::string bundle, channel_dir, key_path;
  std::string channel_name = "stable";  // used when the channel is new
  int deltas_from = 2;                  // deltas from the last N releases of this image
  int rollout_percent = 100;
  std::optional<int> halt_after_failures, halt_failure_percent;  // fleets: docs/fleet.md
  uint64_t expires_in_days = 30;
  std::optional<uint64_t> now;  // seconds since the epoch; tests fix it
};

struct PublishedDelta {
  ChannelDelta entry;
  DeltaStats stats;
};

struct PublishResult {
  ChannelRelease release;
  std::vector<PublishedDelta> deltas;
  std::string no_deltas;  // why no delta was made when there were releases to make one from
  uint64_t serial = 0, expires = 0;
};

PublishResult publish(const PublishOptions& o);

// Reads DIR/index.json and checks its signature against the key; nullopt for a new channel.
[[nodiscard]] std::optional<ChannelIndex> read_channel(const std::string& dir,
                                                       const sig::PublicKey& key);

}  // namespace osup::build
