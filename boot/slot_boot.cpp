#include "boot/slot_boot.h"

namespace osup {

SlotEspPaths slot_esp_paths(layout::Slot s) {
  std::string dir = std::string("/osup/") + layout::slot_char(s);
  return {dir, dir + "/vmlinuz", dir + "/initrd", dir + "/manifest.json",
          dir + "/manifest.json.sig"};
}

std::string slot_cmdline(const Manifest& m, layout::Slot s) {
  const Digest d = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  std::string cmd = m.boot.cmdline;
  if (!cmd.empty()) cmd += ' ';
  // "ro": the root is erofs on dm-verity. Without it systemd-gpt-auto-generator takes the
  // root partition (no GPT read-only flag) as writable and systemd-remount-fs fails at
  // every boot trying to remount it read-write.
  cmd += "ro roothash=" + m.verity.root_hash +
         " systemd.verity_root_data=PARTUUID=" + layout::root_partition_uuid(d).str() +
         " systemd.verity_root_hash=PARTUUID=" + layout::verity_partition_uuid(d).str() +
         " osup.slot=" + layout::slot_char(s);
  return cmd;
}

PayloadKind slot_uki_kind(layout::Slot s) {
  return s == layout::Slot::a ? PayloadKind::uki_a : PayloadKind::uki_b;
}

std::string slot_title(const Manifest& m, layout::Slot s) {
  return m.name + " " + m.version + " (slot " + layout::slot_char(s) + ")";
}

}  // namespace osup
