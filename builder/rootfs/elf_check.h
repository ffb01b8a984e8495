// Sanity checks on a populated rootfs before it is packed: does it run on the target
// arch, and which kernel and initrd does it ship.
#pragma once

#include <optional>
#include <string>

#include "base/arch.h"

namespace osup::build {

// Reads the ELF header of ROOT's /bin/sh (symlinks resolved inside ROOT, never on the
// host), and of /sbin/init and /usr/bin/env when they are ELF binaries. Throws when one is
// built for another machine than EXPECTED, and when there is no /bin/sh at all.
void check_rootfs_arch(const std::string& root, Arch expected);

// The machine name of an ELF file ("x86_64", "aarch64", "arm", ...), or nullopt when the
// file is not ELF (a script, say). Throws when it cannot be read.
[[nodiscard]] std::optional<std::string> elf_machine_name(const std::string& path);

// Kernel and initrd inside a rootfs, as host paths (ROOT + path resolved inside ROOT).
struct KernelFiles {
  std::string kernel, initrd /* empty when there is none */, version;
};
// Looks for /boot/vmlinuz-<ver> (Debian; also vmlinux-/Image-) with /boot/initrd.img-<ver>
// or /boot/initramfs-<ver>.img, then /usr/lib/modules/<ver>/vmlinuz, then the /vmlinuz
// symlink. With several versions, the highest (version order) wins. nullopt if none.
[[nodiscard]] std::optional<KernelFiles> find_kernel(const std::string& root);

}  // namespace osup::build
