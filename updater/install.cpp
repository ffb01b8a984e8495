#include "updater/install.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

#include "format/bundle.h"
#include "format/error.h"
#include "format/fault.h"
#include "format/fd.h"
#include "format/size.h"
#include "format/slot_boot.h"
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

verity::Params verity_params(const Manifest& m) {
  verity::Params p;
  p.data_size = m.verity.data_size;
  p.salt = from_hex(m.verity.salt, "manifest verity.salt");
  p.uuid = Uuid::parse(m.verity.uuid, "manifest verity.uuid");
  return p;
}

void check_slot_tree(const System& sys, layout::Slot s, const Manifest& m) {
  UniqueFd fd = open_file(sys.disk, O_RDONLY);
  verity::verify_tree(fd.get(), verity_params(m),
                      digest_from_hex(m.verity.root_hash, "manifest verity.root_hash"),
                      sys.slot(s).verity.start);
}

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

void check_compatible(const System& sys, const Manifest& m, const std::optional<Manifest>& cur,
                      const InstallOptions& opts) {
  if (m.arch != arch_name(sys.arch))
    fail("bundle is for " + m.arch + " but this disk is " + arch_name(sys.arch) +
         "; use a bundle built with --arch " + arch_name(sys.arch));
  if (!cur) return;
  if (m.compatible != cur->compatible)
    fail("bundle is for '" + m.compatible + "' but this system runs '" + cur->compatible +
         "'; use a bundle built from this system's image spec");
  if (!opts.allow_downgrade && compare_versions(m.version, cur->version) < 0)
    fail("bundle version " + m.version + " is older than the running " + cur->version +
         "; pass --allow-downgrade to install it anyway");
}

void check_fits(const System& sys, const Manifest& m, layout::Slot target) {
  const SlotPartitions& sp = sys.slot(target);
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

// verity::verify with one stream-sized buffer, so the read-back stays within the
// updater's memory bound (< 32 MiB) like the stream before it.
void read_back(int fd, const verity::Params& p, const Digest& root_hash, const SlotPartitions& sp,
               Progress* progress) {
  verity::verify_tree(fd, p, root_hash, sp.verity.start);
  verity::DataVerifier verifier(fd, p, root_hash, sp.verity.start);
  (void)::posix_fadvise(fd, static_cast<off_t>(sp.root.start), static_cast<off_t>(p.data_size),
                        POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> buf(kStreamChunk);
  for (uint64_t off = 0; off < p.data_size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), p.data_size - off));
    const size_t got =
        pread_full(fd, std::span(buf.data(), want), sp.root.start + off, sp.root.label);
    verifier.update(std::span(buf.data(), got));
    if (progress) progress->advance(got);
    if (got < want) break;  // finish() names the short data
    off += got;
  }
  verifier.finish();
}

}  // namespace

layout::Slot current_slot(const System& sys, const BootControl& boot) {
  if (sys.booted) return *sys.booted;
  if (auto next = boot.next_boot()) return *next;
  return layout::Slot::a;
}

std::optional<Manifest> slot_manifest(const System& sys, layout::Slot s) {
  auto text = sys.esp_files->read(slot_esp_paths(s).manifest);
  if (!text) return std::nullopt;
  return Manifest::parse(*text);
}

Manifest verified_slot_manifest(const System& sys, layout::Slot s, const sig::TrustStore& trust) {
  SlotEspPaths paths = slot_esp_paths(s);
  auto text = sys.esp_files->read(paths.manifest);
  auto signature = sys.esp_files->read(paths.signature);
  if (!text || !signature)
    fail(std::string("slot ") + layout::slot_char(s) + " holds no installed version");
  if (!trust.find_signer(*text, *signature))
    fail(std::string("slot ") + layout::slot_char(s) +
         "'s manifest is not signed by a trusted key (" + trust.description() + ")");
  return Manifest::parse(*text);
}

InstallResult install_bundle(System& sys, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts) {
  const layout::Slot cur = current_slot(sys, boot);
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
  check_compatible(sys, m, slot_manifest(sys, cur), opts);
  check_fits(sys, m, target);

  InstallResult result;
  result.slot = target;
  result.version = m.version;
  const SlotPartitions& sp = sys.slot(target);
  const SlotEspPaths paths = slot_esp_paths(target);

  // From here on the target slot is being replaced: first make sure nothing boots it.
  fault::point("disable target entry");
  with_context("disabling " + target_name, [&] {
    boot.disable(target);
    fault::point("remove target manifest");
    sys.esp_files->remove(paths.manifest);
    sys.esp_files->remove(paths.signature);
  });

  TempDir tmp;
  std::map<std::string, std::string> small_files;
  bool verity_done = false;
  const verity::Params vparams = verity_params(m);
  const Digest root_hash = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  bool direct = false;
  UniqueFd disk = open_for_writing(sys.disk, &direct);
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
      StreamTarget t{disk.get(), direct, part.start, part.size, part.label};
      Progress progress("writing " + p->name, p->size, opts.progress);
      auto source = [&](std::span<std::byte> buf) { return reader.read(buf); };
      if (!is_root) {
        stream_to_partition(
            source, [](std::span<const std::byte>) {}, t, &progress);
        fault::point("sync verity");
        fsync_fd(disk.get(), sys.disk);
        // The tree must chain up to the signed root hash before any data is trusted to it.
        UniqueFd hash_fd = open_file(sys.disk, O_RDONLY);
        verity::verify_tree(hash_fd.get(), vparams, root_hash, sp.verity.start);
        verity_done = true;
        return;
      }
      UniqueFd hash_fd = open_file(sys.disk, O_RDONLY);
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
  fsync_fd(disk.get(), sys.disk);
  disk.reset();
  result.stream_seconds = seconds_since(t0);

  if (opts.readback) {
    auto t1 = Clock::now();
    with_context("reading back " + target_name, [&] {
      UniqueFd fd = open_file(sys.disk, O_RDONLY);
      Progress progress("verifying", m.verity.data_size, opts.progress);
      read_back(fd.get(), vparams, root_hash, sp, &progress);
    });
    result.readback_seconds = seconds_since(t1);
  }

  // DPS pairing: the slot's partition UUIDs name the root hash it now holds.
  with_context("updating partition UUIDs of " + target_name, [&] {
    fault::point("set root partition uuid");
    gpt::set_partition_uuid(sys.disk, sp.root.number, layout::root_partition_uuid(root_hash));
    fault::point("set verity partition uuid");
    gpt::set_partition_uuid(sys.disk, sp.verity.number, layout::verity_partition_uuid(root_hash));
  });

  with_context("installing boot files of " + target_name, [&] {
    sys.esp_files->mkdirs(paths.dir);
    fault::point("copy kernel");
    if (small_files.count("kernel")) sys.esp_files->copy_in(small_files["kernel"], paths.kernel);
    fault::point("copy initrd");
    if (small_files.count("initrd")) sys.esp_files->copy_in(small_files["initrd"], paths.initrd);
    fault::point("write signature");
    sys.esp_files->write_atomic(paths.signature, reader.signature());
    fault::point("write manifest");
    sys.esp_files->write_atomic(paths.manifest, reader.manifest_bytes());
  });

  // Last: the loader learns about the new slot only now that everything else is in place.
  fault::point("install entry");
  with_context("writing the boot entry of " + target_name, [&] {
    boot.install(target, EntrySpec{slot_title(m, target), m.version, paths.kernel,
                                   small_files.count("initrd") ? paths.initrd : "",
                                   slot_cmdline(m, target), m.boot.tries});
  });
  return result;
}

void verify_slot(const System& sys, layout::Slot s, const sig::TrustStore& trust,
                 ProgressMode progress_mode) {
  const std::string name = std::string("slot ") + layout::slot_char(s);
  Manifest m = verified_slot_manifest(sys, s, trust);
  const SlotPartitions& sp = sys.slot(s);
  const Digest root_hash = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  with_context("verifying " + name, [&] {
    UniqueFd fd = open_file(sys.disk, O_RDONLY);
    Progress progress("verifying", m.verity.data_size, progress_mode);
    verity::verify(fd.get(), fd.get(), verity_params(m), root_hash, &progress, sp.root.start,
                   sp.verity.start);
    SlotEspPaths paths = slot_esp_paths(s);
    for (const char* kind : {"kernel", "initrd"}) {
      const Payload* p = m.find(kind);
      if (!p) continue;
      auto content =
          sys.esp_files->read(kind == std::string("kernel") ? paths.kernel : paths.initrd);
      if (!content) fail(std::string(kind) + " is missing from the ESP");
      if (to_hex(sha256(*content)) != p->sha256)
        fail(std::string(kind) + " on the ESP does not match the manifest");
    }
  });
}

}  // namespace osup
