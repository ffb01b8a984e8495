#include "updater/install.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

#include "format/bundle.h"
#include "base/error.h"
#include "base/fault.h"
#include "base/fd.h"
#include "base/size.h"
#include "boot/publish_slot.h"
#include "boot/slot_boot.h"
#include "format/verity.h"
#include "updater/stream_writer.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

namespace {

// Opens the disk for slot writes: O_DIRECT where possible (several times faster here
// than buffered writes and it leaves the page cache alone), buffered otherwise (tmpfs).
UniqueFd open_for_writing(const std::string& disk, bool* direct) {
  int fd = ::open(disk.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    *direct = true;
    return UniqueFd(fd);
  }
  *direct = false;
  return open_file(disk, O_RDWR);
}

// A small payload (kernel, initrd) goes to a private temp file, then onto the ESP.
std::string stream_to_temp(BundleReader& reader, const Payload& p, const fs::path& dir) {
  std::string path = (dir / p.name).string();
  UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::byte> buf(1 << 20);
  for (size_t n; (n = reader.read(buf)) > 0;)
    write_all(fd.get(), std::span<const std::byte>(buf.data(), n), path);
  return path;
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string t = std::string(base && *base ? base : "/tmp") + "/osup-XXXXXX";
    if (!::mkdtemp(t.data())) fail_errno("create a temporary directory", errno);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void check_compatible(const OsupDisk& disk, const Manifest& m, const std::optional<Manifest>& cur,
                      const InstallOptions& opts) {
  if (m.arch != arch_name(disk.arch))
    fail("bundle is for " + m.arch + " but this disk is " + arch_name(disk.arch) +
         "; use a bundle built with --arch " + arch_name(disk.arch));
  if (!cur) return;
  if (m.compatible != cur->compatible)
    fail("bundle is for '" + m.compatible + "' but this system runs '" + cur->compatible +
         "'; use a bundle built from this system's image spec");
  if (!opts.allow_downgrade && compare_versions(m.version, cur->version) < 0)
    fail("bundle version " + m.version + " is older than the running " + cur->version +
         "; pass --allow-downgrade to install it anyway");
}

void check_fits(const OsupDisk& disk, const Manifest& m, layout::Slot target) {
  const SlotPartitions& sp = disk.slot(target);
  const Payload* root = m.find("root");
  const Payload* hash = m.find("verity");
  if (root->size > sp.root.size)
    fail("root image is " + format_size(root->size) + " but slot " + layout::root_label(target) +
         " holds " + format_size(sp.root.size) +
         "; build the image with a smaller rootfs or repartition");
  if (hash->size > sp.verity.size)
    fail("verity tree is " + format_size(hash->size) + " but " + layout::verity_label(target) +
         " holds " + format_size(sp.verity.size));
  if (m.verity.data_size != root->size || m.verity.hash_size != hash->size)
    fail("manifest is inconsistent: verity sizes do not match the payloads");
}

}  // namespace

InstallResult install_bundle(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts) {
  const layout::Slot cur = current_slot(disk, boot);
  const layout::Slot target = layout::other(cur);
  const std::string target_name = std::string("slot ") + layout::slot_char(target);

  UniqueFd bundle_fd;
  int in_fd = STDIN_FILENO;
  if (opts.bundle != "-") {
    bundle_fd = open_file(opts.bundle, O_RDONLY);
    in_fd = bundle_fd.get();
  }
  BundleReader reader(in_fd, opts.bundle == "-" ? "stdin" : opts.bundle);
  reader.read_header();
  // Nothing is written before the signature, arch, compatibility, version and sizes pass.
  const Manifest m = reader.verify(trust);
  check_compatible(disk, m, slot_manifest(disk, cur), opts);
  check_fits(disk, m, target);

  InstallResult result;
  result.slot = target;
  result.version = m.version;
  const SlotPartitions& sp = disk.slot(target);

  // From here on the target slot is being replaced: first make sure nothing boots it.
  with_context("disabling " + target_name, [&] { retire_slot(*disk.esp_files, boot, target); });

  TempDir tmp;
  std::map<std::string, std::string> small_files;
  bool verity_done = false;
  const verity::Params vparams = verity_params(m);
  const Digest root_hash = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  bool direct = false;
  UniqueFd out = open_for_writing(disk.path, &direct);
  auto t0 = Clock::now();

  while (const Payload* p = reader.next_payload()) {
    with_context("installing " + target_name + ": " + p->name, [&] {
      if (p->name == "kernel" || p->name == "initrd") {
        small_files[p->name] = stream_to_temp(reader, *p, tmp.path());
        return;
      }
      const bool is_root = p->name == "root";
      if (is_root && !verity_done)
        fail("bundle carries root before verity; rebuild it with osup-build");
      const gpt::Partition& part = is_root ? sp.root : sp.verity;
      StreamTarget t{out.get(), direct, part.start, part.size, part.label};
      Progress progress("writing " + p->name, p->size, opts.progress);
      auto source = [&](std::span<std::byte> buf) { return reader.read(buf); };
      if (!is_root) {
        stream_to_partition(
            source, [](std::span<const std::byte>) {}, t, &progress);
        fault::point("sync verity");
        fsync_fd(out.get(), disk.path);
        // The tree must chain up to the signed root hash before any data is trusted to it.
        UniqueFd hash_fd = open_file(disk.path, O_RDONLY);
        verity::verify_tree(hash_fd.get(), vparams, root_hash, sp.verity.start);
        verity_done = true;
        return;
      }
      UniqueFd hash_fd = open_file(disk.path, O_RDONLY);
      verity::DataVerifier verifier(hash_fd.get(), vparams, root_hash, sp.verity.start);
      // Every root block is checked against the tree that chains to the signed root hash
      // (finish() below fails on missing blocks), so a second hash of the same bytes would
      // only cost a core: the payload sha256 is left out for root.
      reader.skip_sha256_for_current();
      result.root_bytes = stream_to_partition(
          source, [&](std::span<const std::byte> b) { verifier.update(b); }, t, &progress);
      verifier.finish();
    });
  }
  fault::point("sync slot");
  fsync_fd(out.get(), disk.path);
  out.reset();
  result.stream_seconds = seconds_since(t0);

  if (opts.readback) {
    auto t1 = Clock::now();
    with_context("reading back " + target_name, [&] {
      Progress progress("verifying", m.verity.data_size, opts.progress);
      read_back(disk, target, m, &progress);
    });
    result.readback_seconds = seconds_since(t1);
  }

  // DPS pairing: the slot's partition UUIDs name the root hash it now holds.
  with_context("updating partition UUIDs of " + target_name, [&] {
    fault::point("set root partition uuid");
    gpt::set_partition_uuid(disk.path, sp.root.number, layout::root_partition_uuid(root_hash));
    fault::point("set verity partition uuid");
    gpt::set_partition_uuid(disk.path, sp.verity.number, layout::verity_partition_uuid(root_hash));
  });

  auto small = [&](const char* name) {
    auto it = small_files.find(name);
    return it == small_files.end() ? std::string() : it->second;
  };
  publish_slot(*disk.esp_files, boot, target,
               SlotRelease{m, reader.manifest_bytes(), reader.signature(), small("kernel"),
                           small("initrd")});
  return result;
}

}  // namespace osup
