// Turning a populated rootfs into one image many machines share: strip what identifies
// the build machine or one installation, install the trusted update key, stamp the
// image's name and version, and make timestamps reproducible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace osup::build {

struct PrepareOptions {
  std::string name, version;
  std::string public_key_pem;  // installed at /usr/lib/osup/keys/<key_id>.pem; empty: none
  std::string key_id;          // [A-Za-z0-9._-]+
  std::optional<uint64_t> source_date_epoch;
};

// Empties /etc/machine-id (0 bytes: systemd treats the first boot as such), removes
// /var/lib/dbus/machine-id, /etc/hostname, ssh host keys, systemd's random seed and
// credential secret, apt lists and caches, debconf *-old files, and the contents of
// /var/log (directories kept), /tmp and /var/tmp. Writes IMAGE_ID and IMAGE_VERSION into
// /usr/lib/os-release (creating it from /etc/os-release, which then links to it). With
// source_date_epoch, every mtime newer than it is clamped to it (symlinks included).
// Every path is resolved inside ROOT: the rootfs's symlinks never lead outside it.
void prepare_rootfs(const std::string& root, const PrepareOptions& options);

}  // namespace osup::build
