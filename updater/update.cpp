#include "updater/update.h"

#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "updater/channel_client.h"
#include "updater/delta_install.h"
#include "updater/verify.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

// Downloads are named by their content hash, so a partial file from an earlier run is
// continued only for the very same file.
std::string cache_path(const UpdateOptions& o, const ChannelFile& f, bool delta) {
  return (fs::path(o.cache_dir) / (f.sha256 + (delta ? ".osupd" : ".osup"))).string();
}

uint64_t partial_size(const std::string& path) {
  std::error_code ec;
  const uint64_t n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

// Removes the downloads earlier runs left for other releases (only files osup names:
// 64 hex digits + .osup or .osupd; anything else in the directory is not ours).
void prune_cache(const UpdateOptions& o, const std::string& keep) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o.cache_dir, ec)) {
    const std::string ext = e.path().extension().string(), stem = e.path().stem().string();
    const bool ours = (ext == ".osup" || ext == ".osupd") && stem.size() == 64 &&
                      stem.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (ours && e.path().string() != keep) fs::remove(e.path(), ec);
  }
}

void check_space(const std::string& dir, uint64_t need) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return;
  const uint64_t have = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  if (have < need + (16u << 20))
    fail("not enough space in " + dir + " for the download: it needs " + format_size(need) +
         " and " + format_size(have) + " are free; free some space and run osup update again");
}

std::string fetch(const UpdateOptions& o, const ChannelFile& f, bool delta) {
  fs::create_directories(o.cache_dir);
  std::string path = cache_path(o, f, delta);
  prune_cache(o, path);
  const uint64_t have = partial_size(path);
  check_space(o.cache_dir, f.size > have ? f.size - have : 0);
  Progress progress("downloading", f.size, o.progress);
  download_to_file(join_url(o.channel_url, f.path), path, DownloadExpect{f.size, f.sha256}, o.http,
                   &progress);
  return path;
}

UpdatePlan make_plan(const OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                     const UpdateOptions& o, const Manifest& running) {
  UpdatePlan plan;
  plan.current = running.version;
  ChannelFetch f{o.channel_url, o.state_dir, channel_time(o.now), o.http};
  const ChannelIndex idx = fetch_channel_index(f, trust);
  plan.channel = idx.channel;
  plan.serial = idx.serial;
  const ChannelRelease* r =
      pick_release(idx, running.arch, running.compatible, running.version, o.machine_id);
  if (!r) return plan;
  plan.release = *r;
  (void)disk;
  (void)boot;
  if (const ChannelDelta* d = find_delta(*r, running.verity.root_hash)) {
    plan.delta = true;
    plan.file = d->file;
  } else {
    plan.file = r->bundle;
  }
  plan.already = std::min(partial_size(cache_path(o, plan.file, plan.delta)), plan.file.size);
  return plan;
}

}  // namespace

std::string read_machine_id(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::string id = read_text_file(path);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

UpdateOutcome run_update(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                         const UpdateOptions& o,
                         const std::function<void(const UpdatePlan&)>& announce) {
  const layout::Slot cur = current_slot(disk, boot);
  const Manifest running = verified_slot_manifest(disk, cur, trust);
  UpdateOutcome out;
  out.plan = make_plan(disk, boot, trust, o, running);
  announce(out.plan);
  if (out.plan.release && o.check_release) out.refused = o.check_release(*out.plan.release);
  if (!out.plan.release || o.check_only || !out.refused.empty()) return out;

  const ChannelRelease& r = *out.plan.release;
  bool cleared = !o.before_install;
  auto gate = [&] {  // the fleet's go-ahead, asked once, right before the first write
    if (!cleared) out.refused = o.before_install(r), cleared = out.refused.empty();
    return cleared;
  };
  if (out.plan.delta) {
    try {
      const std::string file = fetch(o, out.plan.file, true);
      if (!gate()) return out;
      out.install = install_delta(disk, boot, trust, {file, o.allow_downgrade, o.progress});
      fs::remove(file);
    } catch (const Error& e) {
      // A delta that cannot be fetched or applied is never the end: the full bundle
      // carries the same signed release.
      out.fallback = e.what();
      std::fprintf(stderr, "osup: the delta did not work (%s); downloading the full bundle\n",
                   e.what());
      out.plan.delta = false;
      out.plan.file = r.bundle;
    }
  }
  if (!out.install) {
    const std::string file = fetch(o, r.bundle, false);
    if (!gate()) return out;
    out.install = install_bundle(disk, boot, trust,
                                 InstallOptions{file, o.allow_downgrade, true, o.progress});
    fs::remove(file);
  }
  out.installed = true;
  return out;
}

}  // namespace osup
