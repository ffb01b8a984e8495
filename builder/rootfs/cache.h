// Incremental builds (`osup-build image --incremental`): the tree that comes out of the
// expensive stage (rootfs source + overlay + --deb + hooks: apt, kernel, dracut) is kept as
// a tarball keyed by everything that went into it, so a second version of the same image
// (or a rebuild after changing only the version or an --overlay) skips that stage.
// mkosi's Incremental= does the same for its package stage.
//
// The key covers: the arch and image name, the source (debootstrap parameters, the
// tarball's bytes, or a directory's file metadata), the overlay's files (paths, modes,
// bytes), the hooks' text in order, and the --deb's bytes. The version is left out unless
// a hook mentions OSUP_IMAGE_VERSION, so "same spec, new version" hits the cache.
// Hooks that fetch from the network (apt-get upgrade) are frozen at the cached result:
// build without --incremental to refresh it.
#pragma once

#include <optional>
#include <string>

#include "builder/spec.h"

namespace osup::build {

// Hex SHA-256 over the inputs above.
[[nodiscard]] std::string hooked_rootfs_key(const Spec& spec,
                                            const std::optional<std::string>& deb);

// Where osup-build keeps what it caches (this one and debootstrap's, unless a debootstrap
// source names its own folder): $OSUP_CACHE_DIR, else ~/.cache/osup, else /var/cache/osup.
[[nodiscard]] std::string cache_root();

// <cache_root()>/rootfs/<name>-<arch>-<first 16 hex of KEY>.tar.zst.
[[nodiscard]] std::string hooked_rootfs_cache_path(const Spec& spec, const std::string& key);

// Stores DIR as the cache entry at PATH (atomically) and removes older entries of the same
// image name and arch, so the cache holds one tree per image. A failure only warns.
void store_hooked_rootfs(const std::string& dir, const std::string& path);

}  // namespace osup::build
