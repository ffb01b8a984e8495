#include "updater/install.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "base/fault.h"
#include "base/fd.h"
#include "base/size.h"
#include "boot/publish_slot.h"
#include "boot/slot_boot.h"
#include "format/bundle_reader.h"
#include "format/verity.h"
#include "updater/bundle_source.h"
#include "updater/slot_install.h"
#include "updater/stream_writer.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

// A small payload (kernel, initrd) goes to a private temp file, then onto the ESP.
std::string stream_to_temp(BundleReader& reader, const Payload& p, const fs::path& dir) {
  std::string path = (dir / to_string(p.kind)).string();
  UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::byte> buf(1 << 20);
  for (size_t n; (n = reader.read(buf)) > 0;)
    write_all(fd.get(), std::span<const std::byte>(buf.data(), n), path);
  return path;
}

void discard(BundleReader& reader) {
  std::vector<std::byte> buf(1 << 20);
  while (reader.read(buf) > 0) {
  }
}

// Streams the payloads into the target slot: kernel, initrd and its UKI to temp files (for the
// ESP), the verity tree into its partition, checked against the signed root hash, then the root,
// every block checked against that tree as it is written.
class SlotWriter {
 public:
  SlotWriter(const OsupDisk& disk, layout::Slot target, const Manifest& m,
             const InstallOptions& opts)
      : disk_(disk),
        target_(target),
        part_(disk.slot(target)),
        opts_(opts),
        params_(verity_params(m)),
        root_hash_(digest_from_hex(m.verity.root_hash, "manifest verity.root_hash")),
        out_(open_for_writing(disk.path, &direct_)) {}

  void write(BundleReader& reader, const Payload& p, InstallResult& result) {
    switch (p.kind) {
      case PayloadKind::kernel:
        kernel_ = stream_to_temp(reader, p, tmp_.path());
        return;
      case PayloadKind::initrd:
        initrd_ = stream_to_temp(reader, p, tmp_.path());
        return;
      case PayloadKind::uki_a:
      case PayloadKind::uki_b:
        // Both are read (the reader checks each one's sha256); the target slot's is kept.
        if (p.kind == slot_uki_kind(target_))
          uki_ = stream_to_temp(reader, p, tmp_.path());
        else
          discard(reader);
        return;
      case PayloadKind::verity:
        return write_tree(reader, p);
      case PayloadKind::root:
        result.root_bytes = write_root(reader, p);
        return;
    }
  }

  void sync() {
    fault::point("sync slot");
    fsync_fd(out_.get(), disk_.path);
    out_.reset();
  }

  [[nodiscard]] const std::string& kernel() const { return kernel_; }
  [[nodiscard]] const std::string& initrd() const { return initrd_; }
  [[nodiscard]] const std::string& uki() const { return uki_; }
  [[nodiscard]] const Digest& root_hash() const { return root_hash_; }

 private:
  StreamTarget target(const gpt::Partition& part) const {
    return StreamTarget{out_.get(), direct_, part.start, part.size, part.label};
  }

  void write_tree(BundleReader& reader, const Payload& p) {
    Progress progress("writing verity", p.size, opts_.progress);
    stream_to_partition([&](std::span<std::byte> b) { return reader.read(b); },
                        [](std::span<const std::byte>) {}, target(part_.verity), &progress);
    fault::point("sync verity");
    fsync_fd(out_.get(), disk_.path);
    // The tree must chain up to the signed root hash before any data is trusted to it.
    UniqueFd hash_fd = open_file(disk_.path, O_RDONLY);
    verity::verify_tree(hash_fd.get(), params_, root_hash_, part_.verity.start);
    tree_done_ = true;
  }

  uint64_t write_root(BundleReader& reader, const Payload& p) {
    if (!tree_done_) fail("bundle carries root before verity; rebuild it with osup-build");
    UniqueFd hash_fd = open_file(disk_.path, O_RDONLY);
    verity::DataVerifier verifier(hash_fd.get(), params_, root_hash_, part_.verity.start);
    // Every root block is checked against the tree that chains to the signed root hash
    // (finish() below fails on missing blocks), so a second hash of the same bytes would
    // only cost a core: the payload sha256 is left out for root.
    reader.skip_sha256_for_current();
    Progress progress("writing root", p.size, opts_.progress);
    const uint64_t n = stream_to_partition(
        [&](std::span<std::byte> b) { return reader.read(b); },
        [&](std::span<const std::byte> b) { verifier.update(b); }, target(part_.root), &progress);
    verifier.finish();
    return n;
  }

  const OsupDisk& disk_;
  const layout::Slot target_;
  const SlotPartitions& part_;
  const InstallOptions& opts_;
  const verity::Params params_;
  const Digest root_hash_;
  bool direct_ = false, tree_done_ = false;
  UniqueFd out_;
  TempDir tmp_;
  std::string kernel_, initrd_, uki_;
};

}  // namespace

VerifiedBundle open_verified_bundle(const std::string& what, const sig::TrustStore& trust) {
  VerifiedBundle b;
  b.source = open_bundle_source(what);
  b.reader = std::make_unique<BundleReader>(*b.source);
  b.manifest = b.reader->verify(trust);
  return b;
}

InstallResult install_bundle(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts) {
  VerifiedBundle bundle = open_verified_bundle(opts.bundle, trust);
  return install_bundle(disk, boot, bundle, opts);
}

InstallResult install_bundle(OsupDisk& disk, BootControl& boot, VerifiedBundle& bundle,
                             const InstallOptions& opts) {
  const layout::Slot cur = current_slot(disk, boot);
  const layout::Slot target = layout::other(cur);
  const std::string target_name = std::string("slot ") + layout::slot_char(target);
  BundleReader& reader = *bundle.reader;
  const Manifest& m = bundle.manifest;
  // Nothing is written before the signature (checked already), arch, compatibility,
  // version, kernel and sizes pass.
  check_compatible(disk, m, slot_manifest(disk, cur), opts.allow_downgrade);
  check_fits(disk, m, target);
  check_entry_type(boot, m);

  InstallResult result;
  result.slot = target;
  result.version = m.version;

  // From here on the target slot is being replaced: first make sure nothing boots it.
  with_context("disabling " + target_name, [&] { retire_slot(*disk.esp_files, boot, target); });

  SlotWriter writer(disk, target, m, opts);
  const auto t0 = Clock::now();
  while (const Payload* p = reader.next_payload())
    with_context("installing " + target_name + ": " + to_string(p->kind),
                 [&] { writer.write(reader, *p, result); });
  writer.sync();
  result.stream_seconds = seconds_since(t0);

  if (opts.readback) {
    const auto t1 = Clock::now();
    with_context("reading back " + target_name, [&] {
      Progress progress("verifying", m.verity.data_size, opts.progress);
      read_back(disk, target, m, &progress);
    });
    result.readback_seconds = seconds_since(t1);
  }

  with_context("updating partition UUIDs of " + target_name,
               [&] { pair_partition_uuids(disk, target, writer.root_hash()); });
  publish_slot(*disk.esp_files, boot, target,
               SlotRelease{m, reader.manifest_bytes(), reader.signature(), writer.kernel(),
                           writer.initrd(), writer.uki()});
  return result;
}

}  // namespace osup
