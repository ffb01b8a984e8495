// Where a tar entry's data starts, found from its header bytes, so an uncompressed payload
// can be read in place (pread into the install's aligned buffers) instead of being copied
// through libarchive's buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/byte_source.h"

namespace osup {

// The offset of the data of the entry whose header(s) start at `header_pos` in `source`,
// if they are one plain ustar header (optionally after one pax header) naming `entry` with
// `size` bytes; nullopt for anything else (the caller then reads through libarchive). What is
// read there is still checked against the manifest (sha256 or verity), so a wrong answer could
// only fail an install, never corrupt one.
[[nodiscard]] std::optional<uint64_t> locate_tar_data(ByteSource& source, uint64_t header_pos,
                                                      const std::string& entry, uint64_t size);

}  // namespace osup
