// Paths inside a rootfs and copying an overlay folder over one. A rootfs is untrusted input:
// its absolute symlinks and '..' names must never make us read or write outside it.
#pragma once

#include <string>

namespace osup::build {

// Copies OVERLAY_DIR over DEST. Files become root-owned (an overlay usually comes from a
// checkout), modes are kept; paths through symlinks in DEST (/bin -> usr/bin) are resolved
// inside DEST, and an existing file or symlink at a target path is replaced, never
// written through.
void apply_overlay(const std::string& overlay_dir, const std::string& dest);

// Resolves PATH (absolute or relative to the root) inside ROOT the way the kernel would
// after chroot(ROOT): symlinks are followed with absolute targets and '..' confined to
// ROOT. Returns the host path (ROOT + resolved path); the last component need not exist.
// Throws on symlink loops. follow_last=false leaves a final symlink unresolved.
[[nodiscard]] std::string resolve_in_root(const std::string& root, const std::string& path,
                                          bool follow_last = true);

}  // namespace osup::build
