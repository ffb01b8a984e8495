// Packing a prepared rootfs into the read-only filesystem image of a slot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace osup::build {

struct FsImageOptions {
  std::string type = "erofs";         // erofs | squashfs
  std::string compression = "lz4hc";  // erofs: lz4hc|lz4|none; squashfs: zstd|xz|gzip|lz4|none
  std::optional<uint64_t> source_date_epoch;
  std::string uuid_seed;  // erofs volume UUID derived from it; empty: from the epoch or random
};

// Packs ROOT into OUT with mkfs.erofs or mksquashfs, keeping owners, modes, xattrs and
// per-file mtimes. With source_date_epoch the image is reproducible: the same tree gives a
// byte-identical image (SOURCE_DATE_EPOCH in the tool's environment sets the build time and
// clamps newer mtimes; erofs gets -U with a derived UUID). The image is padded to a
// multiple of 4096 bytes (dm-verity's block size). Returns its size in bytes.
uint64_t make_fs_image(const std::string& root, const std::string& out,
                       const FsImageOptions& options);

}  // namespace osup::build
