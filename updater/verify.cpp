#include "updater/verify.h"

#include <fcntl.h>

#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "boot/slot_boot.h"
#include "boot/systemd_boot.h"
#include "boot/systemd_boot_uki.h"
#include "format/sha256.h"
#include "updater/stream_writer.h"

namespace osup {

verity::Params verity_params(const Manifest& m) {
  verity::Params p;
  p.data_size = m.verity.data_size;
  p.salt = from_hex(m.verity.salt, "manifest verity.salt");
  p.uuid = Uuid::parse(m.verity.uuid, "manifest verity.uuid");
  return p;
}

void check_slot_tree(const OsupDisk& disk, layout::Slot s, const Manifest& m) {
  UniqueFd fd = open_file(disk.path, O_RDONLY);
  verity::verify_tree(fd.get(), verity_params(m),
                      digest_from_hex(m.verity.root_hash, "manifest verity.root_hash"),
                      disk.slot(s).verity.start);
}

layout::Slot current_slot(const OsupDisk& disk, const BootControl& boot) {
  if (disk.booted) return *disk.booted;
  if (auto next = boot.next_boot()) return *next;
  return layout::Slot::a;
}

std::optional<Manifest> slot_manifest(const OsupDisk& disk, layout::Slot s) {
  auto text = disk.esp_files->read(slot_esp_paths(s).manifest);
  if (!text) return std::nullopt;
  return Manifest::parse(*text);
}

Manifest verified_slot_manifest(const OsupDisk& disk, layout::Slot s,
                                const sig::TrustStore& trust) {
  SlotEspPaths paths = slot_esp_paths(s);
  auto text = disk.esp_files->read(paths.manifest);
  auto signature = disk.esp_files->read(paths.signature);
  if (!text || !signature)
    fail(std::string("slot ") + layout::slot_char(s) + " holds no installed version");
  if (!trust.find_signer(*text, *signature))
    fail(std::string("slot ") + layout::slot_char(s) +
         "'s manifest is not signed by a trusted key (" + trust.description() + ")");
  return Manifest::parse(*text);
}

void read_back(const OsupDisk& disk, layout::Slot s, const Manifest& m, Progress* progress) {
  const SlotPartitions& sp = disk.slot(s);
  const verity::Params p = verity_params(m);
  const Digest root_hash = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  UniqueFd fd = open_file(disk.path, O_RDONLY);
  // verity::verify with one stream-sized buffer, so the read-back stays within the
  // updater's memory bound (< 32 MiB) like the stream before it.
  verity::verify_tree(fd.get(), p, root_hash, sp.verity.start);
  verity::DataVerifier verifier(fd.get(), p, root_hash, sp.verity.start);
  (void)::posix_fadvise(fd.get(), static_cast<off_t>(sp.root.start),
                        static_cast<off_t>(p.data_size), POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> buf(kStreamChunk);
  for (uint64_t off = 0; off < p.data_size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), p.data_size - off));
    const size_t got =
        pread_full(fd.get(), std::span(buf.data(), want), sp.root.start + off, sp.root.label);
    verifier.update(std::span(buf.data(), got));
    if (progress) progress->advance(got);
    if (got < want) break;  // finish() names the short data
    off += got;
  }
  verifier.finish();
}

void check_slot_uki(const OsupDisk& disk, layout::Slot s, const Manifest& m) {
  const std::string name = std::string("slot ") + layout::slot_char(s);
  const Payload& want = *m.find(slot_uki_kind(s));
  auto file = SystemdBootUki(disk.esp_files).entry_file(s);
  if (!file)
    fail(name + " has no UKI in " + kUkiDir + " on the " + disk.esp_files->describe() +
         "; install the release again (osup switch)");
  const std::string path = std::string(kUkiDir) + "/" + *file;
  auto content = disk.esp_files->read(path);
  if (!content) fail("the UKI " + path + " of " + name + " vanished while reading it");
  const std::string got = to_hex(sha256(*content));
  if (got != want.sha256)
    fail("the UKI " + path + " of " + name + " does not match the signed manifest (sha256 " +
         got.substr(0, 12) + ", manifest '" + to_string(want.kind) + "' " +
         want.sha256.substr(0, 12) + "); install the release again (osup switch)");
}

void verify_slot(const OsupDisk& disk, layout::Slot s, const sig::TrustStore& trust,
                 ProgressMode progress_mode) {
  const std::string name = std::string("slot ") + layout::slot_char(s);
  Manifest m = verified_slot_manifest(disk, s, trust);
  const SlotPartitions& sp = disk.slot(s);
  const Digest root_hash = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  with_context("verifying " + name, [&] {
    UniqueFd fd = open_file(disk.path, O_RDONLY);
    Progress progress("verifying", m.verity.data_size, progress_mode);
    verity::verify(fd.get(), fd.get(), verity_params(m), root_hash, &progress, sp.root.start,
                   sp.verity.start);
    if (m.has_ukis()) return check_slot_uki(disk, s, m);
    SlotEspPaths paths = slot_esp_paths(s);
    for (const PayloadKind kind : {PayloadKind::kernel, PayloadKind::initrd}) {
      const Payload* p = m.find(kind);
      if (!p) continue;
      auto content =
          disk.esp_files->read(kind == PayloadKind::kernel ? paths.kernel : paths.initrd);
      if (!content) fail(to_string(kind) + " is missing from the ESP");
      if (to_hex(sha256(*content)) != p->sha256)
        fail(to_string(kind) + " on the ESP does not match the manifest");
    }
  });
}

}  // namespace osup
