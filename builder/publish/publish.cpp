#include "builder/publish/publish.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "base/fd.h"
#include "builder/publish/bundle_files.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

ChannelFile describe(const std::string& dir, const std::string& rel) {
  const std::string path = (fs::path(dir) / rel).string();
  return ChannelFile{rel, fs::file_size(path), to_hex(sha256_file(path))};
}

// Copies into the channel by temp file + rename, so a server never serves half a file.
void copy_in(const std::string& from, const std::string& to) {
  fs::create_directories(fs::path(to).parent_path());
  const std::string tmp = to + ".tmp";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  UniqueFd fd = open_file(tmp, O_RDONLY | O_CLOEXEC);
  fsync_fd(fd.get(), tmp);
  fs::rename(tmp, to);
}

// The last `n` releases of the same image before `version`, newest first.
std::vector<const ChannelRelease*> delta_sources(const ChannelIndex& idx, const Manifest& m,
                                                 int n) {
  std::vector<const ChannelRelease*> out;
  for (const ChannelRelease& r : idx.releases)
    if (r.arch == m.arch && r.compatible == m.compatible &&
        compare_versions(r.version, m.version) < 0)
      out.push_back(&r);
  std::sort(out.begin(), out.end(), [](const ChannelRelease* a, const ChannelRelease* b) {
    return compare_versions(a->version, b->version) > 0;
  });
  if (out.size() > static_cast<size_t>(std::max(n, 0))) out.resize(static_cast<size_t>(n));
  return out;
}

void write_index(const std::string& dir, const ChannelIndex& idx, const sig::PrivateKey& key) {
  const std::string bytes = idx.to_json();
  // Signature first: a client that reads the new index with the old signature retries.
  atomic_write_file((fs::path(dir) / ChannelIndex::kSignatureFile).string(), key.sign(bytes));
  atomic_write_file((fs::path(dir) / ChannelIndex::kFile).string(), bytes);
  fsync_dir(dir);
}

}  // namespace

std::optional<ChannelIndex> read_channel(const std::string& dir, const sig::PublicKey& key) {
  const fs::path index = fs::path(dir) / ChannelIndex::kFile;
  if (!fs::exists(index)) return std::nullopt;
  const std::string bytes = read_text_file(index.string());
  const std::string sig = read_text_file((fs::path(dir) / ChannelIndex::kSignatureFile).string());
  if (!key.verify(bytes, sig))
    fail(index.string() + " is not signed by this key; publish with the channel's key");
  return with_context(index.string(), [&] { return ChannelIndex::parse(bytes); });
}

PublishResult publish(const PublishOptions& o) {
  if (o.rollout_percent < 0 || o.rollout_percent > 100)
    fail("--rollout wants a percentage 0-100, not " + std::to_string(o.rollout_percent));
  if (o.halt_after_failures && *o.halt_after_failures < 1)
    fail("--halt-after-failures wants 1 or more failures");
  if (o.halt_failure_percent && (*o.halt_failure_percent < 1 || *o.halt_failure_percent > 100))
    fail("--halt-failure-percent wants a percentage 1-100");
  if (o.expires_in_days == 0 || o.expires_in_days > 3650) fail("--expires-in wants 1-3650 days");
  const sig::PrivateKey key = sig::PrivateKey::load(o.key_path);
  const sig::PublicKey pub = sig::PublicKey::from_pem(key.public_pem(), o.key_path);
  sig::TrustStore trust;
  trust.add(pub);
  fs::create_directories(o.channel_dir);
  ChannelIndex idx = read_channel(o.channel_dir, pub).value_or(ChannelIndex{});
  if (idx.channel.empty()) idx.channel = o.channel_name;

  // Everything is checked (signature, not yet published) before the channel changes.
  const std::string work = (fs::path(o.channel_dir) / ".publish-work").string();
  fs::remove_all(work);
  const BundleFiles to = extract_bundle(o.bundle, trust, work + "/new");
  const Manifest& m = to.manifest;
  for (const ChannelRelease& r : idx.releases)
    if (r.version == m.version && r.arch == m.arch && r.compatible == m.compatible)
      fail("the channel already has " + m.name + " " + m.version + " for " + m.arch +
           "; give the new build a new --version");

  PublishResult result;
  ChannelRelease& rel = result.release;
  rel.name = m.name;
  rel.version = m.version;
  rel.arch = m.arch;
  rel.compatible = m.compatible;
  rel.created = m.created;
  rel.root_hash = m.verity.root_hash;
  rel.rollout_percent = o.rollout_percent;
  rel.halt_after_failures = o.halt_after_failures;
  rel.halt_failure_percent = o.halt_failure_percent;
  const std::string stem = m.name + "-" + m.version + "-" + m.arch;
  const std::string bundle_rel = "bundles/" + stem + ".osup";
  copy_in(o.bundle, (fs::path(o.channel_dir) / bundle_rel).string());
  rel.bundle = describe(o.channel_dir, bundle_rel);

  std::vector<const ChannelRelease*> sources = delta_sources(idx, m, o.deltas_from);
  // A delta rebuilds kernel and initrd on the device, never a UKI signed at build time: the
  // device would refuse it and fetch the bundle anyway, so a UKI release gets none.
  if (m.has_ukis() && !sources.empty()) {
    result.no_deltas = "release " + m.version + " boots signed UKIs, which a delta cannot carry";
    sources.clear();
  }
  for (const ChannelRelease* src : sources) {
    const BundleFiles from =
        extract_bundle((fs::path(o.channel_dir) / src->bundle.path).string(), trust, work + "/old");
    const std::string rel_path =
        "deltas/" + m.name + "-" + src->version + "-to-" + m.version + "-" + m.arch + ".osupd";
    const std::string path = (fs::path(o.channel_dir) / rel_path).string();
    fs::create_directories(fs::path(path).parent_path());
    PublishedDelta d;
    d.stats = make_delta(from, to, path);
    d.entry = ChannelDelta{src->version, src->root_hash, describe(o.channel_dir, rel_path)};
    rel.deltas.push_back(d.entry);
    result.deltas.push_back(d);
    fs::remove_all(work + "/old");
  }
  fs::remove_all(work);

  idx.serial += 1;
  idx.expires = channel_time(o.now) + o.expires_in_days * 86400;
  idx.releases.push_back(rel);
  write_index(o.channel_dir, idx, key);
  result.serial = idx.serial;
  result.expires = idx.expires;
  return result;
}

}  // namespace osup::build
