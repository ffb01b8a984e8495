// Fetches a channel's signed index and decides whether to believe it: the signature from
// a trusted key, not expired (freeze attack), and a serial not below the newest this
// machine has seen for that channel (rollback attack), kept in STATE_DIR/channels.json.
#pragma once

#include <cstdint>
#include <string>

#include "format/channel.h"
#include "format/signature.h"
#include "updater/http.h"

namespace osup {

struct ChannelFetch {
  std::string url;        // the channel directory's URL
  std::string state_dir;  // where the newest serial per channel is kept
  uint64_t now = 0;       // seconds since the epoch
  HttpOptions http;
};

// The index, verified; remembers its serial. Throws one line for each refusal.
[[nodiscard]] ChannelIndex fetch_channel_index(const ChannelFetch& f, const sig::TrustStore& trust);

// base + relative path, with exactly one '/' between them.
[[nodiscard]] std::string join_url(const std::string& base, const std::string& path);

// The newest serial recorded for `channel` in state_dir (0 when none).
[[nodiscard]] uint64_t seen_serial(const std::string& state_dir, const std::string& channel);

}  // namespace osup
