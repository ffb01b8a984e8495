// What every way of filling the inactive slot shares (a full bundle, a delta): the checks
// made before the first write, the disk opened for slot writes, a private temp directory,
// and the DPS partition UUIDs set once the slot is verified.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "base/fd.h"
#include "base/temp_dir.h"
#include "boot/boot_control.h"
#include "format/manifest.h"
#include "format/sha256.h"
#include "updater/disk.h"

namespace osup {

using Clock = std::chrono::steady_clock;
[[nodiscard]] double seconds_since(Clock::time_point t);

// Opens the disk for slot writes: O_DIRECT where possible (several times faster here
// than buffered writes and it leaves the page cache alone), buffered otherwise (tmpfs).
[[nodiscard]] UniqueFd open_for_writing(const std::string& disk, bool* direct);

// Arch, compatible string and version (no downgrade unless allowed) against the running slot.
void check_compatible(const OsupDisk& disk, const Manifest& m, const std::optional<Manifest>& cur,
                      bool allow_downgrade);
// Payload sizes against the target's partitions, and a kernel to boot.
void check_fits(const OsupDisk& disk, const Manifest& m, layout::Slot target);

// A Secure Boot bundle (signed UKIs) only onto a disk that boots Type #2 entries, and the
// other way round (boot/publish_slot.h): a mix would sort the Type #1 entry first for good.
void check_entry_type(const BootControl& boot, const Manifest& m);

// DPS pairing: the slot's partition UUIDs name the root hash it now holds.
void pair_partition_uuids(const OsupDisk& disk, layout::Slot target, const Digest& root_hash);

}  // namespace osup
