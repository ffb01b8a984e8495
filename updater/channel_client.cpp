#include "updater/channel_client.h"

#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace osup {
namespace {

constexpr size_t kMaxIndex = 8u << 20;
constexpr size_t kMaxSignature = 64u << 10;
constexpr const char* kStateFile = "channels.json";

std::string state_path(const std::string& dir) { return (fs::path(dir) / kStateFile).string(); }

json read_state(const std::string& dir) {
  const std::string path = state_path(dir);
  if (!fs::exists(path)) return json::object();
  try {
    json j = json::parse(read_text_file(path));
    if (j.is_object()) return j;
  } catch (const json::exception&) {
  }
  fail(path + " is damaged; remove it to trust the next channel index again");
}

void remember_serial(const std::string& dir, const std::string& channel, uint64_t serial) {
  json j = read_state(dir);
  j[channel] = {{"serial", serial}};
  fs::create_directories(dir);
  atomic_write_file(state_path(dir), j.dump(2) + "\n");
}

std::string utc(uint64_t t) {
  const auto tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

}  // namespace

std::string join_url(const std::string& base, const std::string& path) {
  if (!base.empty() && base.back() == '/') return base + path;
  return base + "/" + path;
}

uint64_t seen_serial(const std::string& state_dir, const std::string& channel) {
  const json j = read_state(state_dir);
  auto it = j.find(channel);
  if (it == j.end() || !it->is_object() || !it->contains("serial") ||
      !(*it)["serial"].is_number_unsigned())
    return 0;
  return (*it)["serial"].get<uint64_t>();
}

ChannelIndex fetch_channel_index(const ChannelFetch& f, const sig::TrustStore& trust) {
  const std::string index_url = join_url(f.url, ChannelIndex::kFile);
  std::string bytes, sig;
  // Twice: a publish between our two requests pairs a new index with an old signature.
  for (int attempt = 0; attempt < 2; ++attempt) {
    bytes = http_get(index_url, kMaxIndex, f.http);
    sig = http_get(join_url(f.url, ChannelIndex::kSignatureFile), kMaxSignature, f.http);
    if (trust.find_signer(bytes, sig)) break;
    if (attempt == 1)
      fail("channel index " + index_url + " is not signed by a trusted key (keys in " +
           trust.description() + "); is this the right channel?");
  }
  ChannelIndex idx = with_context(index_url, [&] { return ChannelIndex::parse(bytes); });
  if (f.now >= idx.expires)
    fail("channel index " + index_url + " expired at " + utc(idx.expires) +
         "; the channel is not being kept current (a frozen or stale mirror?)");
  const uint64_t seen = seen_serial(f.state_dir, idx.channel);
  if (idx.serial < seen)
    fail("channel index " + index_url + " has serial " + std::to_string(idx.serial) +
         ", older than serial " + std::to_string(seen) +
         " seen before; refusing an old index (replayed or a stale mirror)");
  if (idx.serial > seen) remember_serial(f.state_dir, idx.channel, idx.serial);
  return idx;
}

}  // namespace osup
