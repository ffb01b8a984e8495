// Root filesystem tarballs: the tarball source, the debootstrap cache and the --incremental
// cache. A tarball is untrusted input: nothing in it may make us write outside DEST.
#pragma once

#include <string>

namespace osup::build {

// Extracts a tar (optionally gz/xz/zst/bz2 compressed) into DEST, keeping owners, modes,
// xattrs, ACLs and device nodes. Refuses absolute names, '..' components, hard links
// leaving DEST and anything written through a symlink (absolute symlink *targets* are fine:
// they are resolved inside the root at boot).
void extract_tarball(const std::string& tarball, const std::string& dest);

// Writes a zstd-compressed tarball of DIR (numeric owners, xattrs, ACLs) to OUT atomically.
void create_tarball(const std::string& dir, const std::string& out);

}  // namespace osup::build
