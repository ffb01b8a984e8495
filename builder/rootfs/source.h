// Filling a root filesystem tree from the spec's source (tarball, directory, debootstrap),
// then the overlay and hooks. A rootfs is untrusted input: nothing it contains (absolute
// symlinks, '..' names) may make us write outside it.
#pragma once

#include <string>

#include "builder/spec.h"

namespace osup::build {

// Fills the empty directory DEST from spec.rootfs. Debootstrap results are cached as a
// tarball under the source's cache dir ($OSUP_CACHE_DIR, default ~/.cache/osup), keyed by
// the SHA-256 of the bootstrap parameters. The overlay and hooks are separate steps.
void populate_rootfs(const Spec& spec, const std::string& dest);

// Where populate_rootfs keeps (or finds) the finished bootstrap for D on ARCH:
// <cache>/debootstrap/<suite>-<debian arch>-<first 16 hex of the parameters' SHA-256>.tar.zst.
[[nodiscard]] std::string debootstrap_cache_path(const DebootstrapSource& d, Arch arch);

// Extracts a tar (optionally gz/xz/zst/bz2 compressed) into DEST, keeping owners, modes,
// xattrs, ACLs and device nodes. Refuses absolute names, '..' components, hard links
// leaving DEST and anything written through a symlink (absolute symlink *targets* are fine:
// they are resolved inside the root at boot).
void extract_tarball(const std::string& tarball, const std::string& dest);

// Writes a zstd-compressed tarball of DIR (numeric owners, xattrs, ACLs) to OUT atomically.
void create_tarball(const std::string& dir, const std::string& out);

// Copies OVERLAY_DIR over DEST. Files become root-owned (an overlay usually comes from a
// checkout), modes are kept; paths through symlinks in DEST (/bin -> usr/bin) are resolved
// inside DEST, and an existing file or symlink at a target path is replaced, never
// written through.
void apply_overlay(const std::string& overlay_dir, const std::string& dest);

// Runs each spec hook in order: copied to DEST/tmp, executed as `chroot DEST /bin/sh -c
// /tmp/<hook>` in a private mount namespace with /proc, /sys and /dev mounted (they vanish
// with the namespace, so a crash never leaves host mounts inside DEST). Environment:
// OSUP_IMAGE_NAME, OSUP_IMAGE_VERSION, OSUP_IMAGE_ARCH.
void run_hooks(const Spec& spec, const std::string& dest);

// Resolves PATH (absolute or relative to the root) inside ROOT the way the kernel would
// after chroot(ROOT): symlinks are followed with absolute targets and '..' confined to
// ROOT. Returns the host path (ROOT + resolved path); the last component need not exist.
// Throws on symlink loops. follow_last=false leaves a final symlink unresolved.
[[nodiscard]] std::string resolve_in_root(const std::string& root, const std::string& path,
                                          bool follow_last = true);

}  // namespace osup::build
