#include "updater/delta_install.h"

#include <fcntl.h>

#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/fault.h"
#include "base/fd.h"
#include "base/mapped_file.h"
#include "boot/publish_slot.h"
#include "boot/slot_boot.h"
#include "format/sha256.h"
#include "format/verity.h"
#include "updater/delta_source.h"
#include "updater/slot_install.h"
#include "updater/stream_writer.h"
#include "updater/verify.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

struct OpenDelta {
  UniqueFd fd;
  delta::Header header;
  uint64_t data_start = 0, size = 0;
  std::string manifest_bytes, signature;
};

std::string read_section(const OpenDelta& d, const delta::Section& s, const std::string& what) {
  if (s.size > (1u << 20) || s.offset + s.size > d.size - d.data_start)
    fail("delta " + what + " lies outside the file; the delta is truncated or corrupt");
  std::string out(static_cast<size_t>(s.size), '\0');
  (void)pread_full(d.fd.get(), std::as_writable_bytes(std::span(out)), d.data_start + s.offset,
                   "delta");
  return out;
}

OpenDelta open_delta(const std::string& path) {
  OpenDelta d;
  d.fd = open_file(path, O_RDONLY | O_CLOEXEC);
  d.size = fd_size(d.fd.get(), path);
  d.header = delta::read_header(d.fd.get(), path, &d.data_start);
  const delta::Header& h = d.header;
  // The root sections are small (it is a delta); hashing them now keeps a damaged file
  // from retiring the target slot.
  Sha256 sha;
  std::vector<std::byte> buf(1 << 20);
  for (const delta::Section& sec : {h.root_ops, h.root_literals}) {
    if (sec.offset + sec.size > d.size - d.data_start)
      fail("delta " + path + " is truncated (its root sections end past the file)");
    for (uint64_t off = 0; off < sec.size;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), sec.size - off));
      const size_t got = pread_full(d.fd.get(), std::span(buf.data(), want),
                                    d.data_start + sec.offset + off, path);
      if (got != want) fail("delta " + path + " is truncated");
      sha.update(std::span<const std::byte>(buf.data(), got));
      off += got;
    }
  }
  if (to_hex(sha.finish()) != h.root_sha256)
    fail("delta " + path +
         " is damaged (its root sections do not match their checksum); download it again");
  d.manifest_bytes = read_section(d, h.manifest, "manifest");
  d.signature = read_section(d, h.signature, "signature");
  return d;
}

// The running slot's kernel or initrd, from the ESP to a private file.
std::string source_file(const OsupDisk& disk, layout::Slot s, PayloadKind kind,
                        const fs::path& dir) {
  const SlotEspPaths paths = slot_esp_paths(s);
  const std::string& esp_path = kind == PayloadKind::kernel ? paths.kernel : paths.initrd;
  std::string out = (dir / ("source-" + to_string(kind))).string();
  if (!disk.esp_files->copy_out(esp_path, out))
    fail("the running slot has no " + esp_path + " on the ESP; use the full bundle");
  return out;
}

// The operations, checked against the header and both roots, and the literal blocks,
// decompressed into a scratch file against the running slot's reference blocks.
struct RootInputs {
  delta::RootPlan plan;
  std::unique_ptr<MappedFile> literals;
};

RootInputs root_inputs(const OpenDelta& d, VerifiedSlotBlocks& source, const Manifest& m,
                       const fs::path& tmp) {
  const delta::Header& h = d.header;
  RootInputs in;
  {
    const MappedFile ops(d.fd.get(), "delta", d.data_start + h.root_ops.offset, h.root_ops.size);
    in.plan = delta::decode_ops(
        ops.bytes(), delta::RootShape{m.verity.data_size / delta::kBlock, source.block_count(),
                                      h.literal_blocks, h.reference_blocks});
  }
  const std::string path = (tmp / "literals").string();
  {
    const MappedFile frame(d.fd.get(), "delta", d.data_start + h.root_literals.offset,
                           h.root_literals.size);
    MappedOutputFile out(path, h.literal_blocks * delta::kBlock);
    delta::decompress_literals(frame.bytes(), source.view(in.plan.reference), out.bytes());
    out.finish(h.literal_blocks * delta::kBlock);
  }
  in.literals = std::make_unique<MappedFile>(path);
  return in;
}

// Rebuilds the new root into the target partition from the delta's operations.
uint64_t write_root(const OsupDisk& disk, const RootInputs& in, const SlotPartitions& target,
                    delta::SourceBlocks& source, const Manifest& m, Progress* progress) {
  delta::RootAssembler root(in.plan, in.literals->bytes(), source);
  bool direct = false;
  UniqueFd out = open_for_writing(disk.path, &direct);
  const uint64_t n = stream_to_partition(
      [&](std::span<std::byte> b) { return root.read(b); }, [](std::span<const std::byte>) {},
      StreamTarget{out.get(), direct, target.root.start, target.root.size, target.root.label},
      progress);
  if (n != m.verity.data_size)
    fail("the delta made " + std::to_string(n) + " root bytes but the manifest says " +
         std::to_string(m.verity.data_size));
  fault::point("sync slot");
  fsync_fd(out.get(), disk.path);
  return n;
}

// The new tree, from the bytes now on disk: it must chain to the signed root hash.
void rebuild_tree(const OsupDisk& disk, const SlotPartitions& target, const Manifest& m,
                  Progress* progress) {
  UniqueFd fd = open_file(disk.path, O_RDWR | O_CLOEXEC);
  const Digest got = verity::build(fd.get(), fd.get(), verity_params(m), progress,
                                   target.root.start, target.verity.start);
  if (got != digest_from_hex(m.verity.root_hash, "manifest verity.root_hash"))
    fail(
        "the root rebuilt from the delta does not match the signed root hash; the delta is "
        "corrupt or made for other bytes (the full bundle still works)");
  fault::point("sync verity");
  fsync_fd(fd.get(), disk.path);
}

}  // namespace

InstallResult install_delta(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                            const DeltaInstallOptions& opts) {
  const layout::Slot cur = current_slot(disk, boot);
  const layout::Slot target = layout::other(cur);
  const std::string target_name = std::string("slot ") + layout::slot_char(target);

  // Everything the delta and the running slot let us check comes before the first write.
  const OpenDelta d = open_delta(opts.delta);
  if (!trust.find_signer(d.manifest_bytes, d.signature))
    fail("the release manifest in delta " + opts.delta +
         " is not signed by a trusted key (keys in " + trust.description() + ")");
  const Manifest m = Manifest::parse(d.manifest_bytes);
  const std::optional<Manifest> running = slot_manifest(disk, cur);
  if (!running || running->verity.root_hash != d.header.source_root_hash)
    fail("delta " + opts.delta + " is made from " + d.header.source_version + " (root " +
         d.header.source_root_hash.substr(0, 12) + ") but slot " + layout::slot_char(cur) +
         " runs " +
         (running ? running->version + " (root " + running->verity.root_hash.substr(0, 12) + ")"
                  : "nothing") +
         "; use the full bundle");
  check_compatible(disk, m, running, opts.allow_downgrade);
  check_fits(disk, m, target);
  // A UKI is signed at build time; a delta rebuilds kernel and initrd, never the signed file
  // (`osup update` then takes the full bundle).
  if (m.has_ukis())
    fail("release " + m.version +
         " boots signed UKIs (Secure Boot), which a delta does not "
         "carry; use the full bundle");
  check_entry_type(boot, m);
  VerifiedSlotBlocks source(disk, cur, *running);

  // Scratch files (the literal blocks, the old initrd's content) can be large: they go to
  // disk (/var/tmp is on the data partition on a device), not to a RAM-backed /tmp.
  TempDir tmp("/var/tmp");
  const RootInputs root = with_context("reading the delta's root operations",
                                       [&] { return root_inputs(d, source, m, tmp.path()); });
  std::string files[2];
  for (PayloadKind k : {PayloadKind::kernel, PayloadKind::initrd}) {
    const Payload* want = m.find(k);
    if (!want) continue;
    const delta::FileDelta* fd = d.header.file(k);
    if (!fd)
      fail("delta " + opts.delta + " has no " + to_string(k) + " section; use the full bundle");
    const std::string out = tmp / to_string(k);
    with_context("rebuilding the " + to_string(k), [&] {
      apply_file_delta(*fd, d.fd.get(), d.data_start, source_file(disk, cur, k, tmp.path()), *want,
                       out, tmp.path());
    });
    files[k == PayloadKind::kernel ? 0 : 1] = out;
  }

  InstallResult result;
  result.slot = target;
  result.version = m.version;
  with_context("disabling " + target_name, [&] { retire_slot(*disk.esp_files, boot, target); });
  const SlotPartitions& tp = disk.slot(target);
  const auto t0 = Clock::now();
  with_context("installing " + target_name + " from the delta", [&] {
    Progress progress("writing root", m.verity.data_size, opts.progress);
    result.root_bytes = write_root(disk, root, tp, source, m, &progress);
  });
  result.stream_seconds = seconds_since(t0);
  const auto t1 = Clock::now();
  with_context("checking " + target_name, [&] {
    Progress progress("verifying", m.verity.data_size, opts.progress);
    rebuild_tree(disk, tp, m, &progress);
  });
  result.readback_seconds = seconds_since(t1);
  with_context("updating partition UUIDs of " + target_name, [&] {
    pair_partition_uuids(disk, target, digest_from_hex(m.verity.root_hash, "root hash"));
  });
  publish_slot(*disk.esp_files, boot, target,
               SlotRelease{m, d.manifest_bytes, d.signature, files[0], files[1]});
  return result;
}

}  // namespace osup
