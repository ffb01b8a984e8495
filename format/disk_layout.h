// The GPT layout builder and updater agree on (docs/design.md "Disk layout"), following
// systemd's Discoverable Partitions Specification.
#pragma once

#include <cstdint>
#include <string>

#include "base/arch.h"
#include "format/sha256.h"
#include "format/uuid.h"

namespace osup::layout {

inline constexpr uint64_t kAlignment = 1024ull * 1024;  // every partition starts on 1 MiB

// Partition numbers (1-based, as GPT tools print them) and labels.
inline constexpr int kEspNumber = 1;
inline constexpr int kDataNumber = 6;
inline constexpr const char* kEspLabel = "esp";
inline constexpr const char* kDataLabel = "data";
inline constexpr const char* kDataFsLabel = "osup-data";  // ext4 volume label
inline constexpr const char* kEspFsLabel = "OSUP-ESP";    // FAT volume label

enum class Slot { a, b };
[[nodiscard]] inline char slot_char(Slot s) { return s == Slot::a ? 'a' : 'b'; }
[[nodiscard]] inline std::string slot_name(Slot s) { return std::string(1, slot_char(s)); }
[[nodiscard]] inline Slot other(Slot s) { return s == Slot::a ? Slot::b : Slot::a; }
[[nodiscard]] inline int root_number(Slot s) { return s == Slot::a ? 2 : 4; }
[[nodiscard]] inline int verity_number(Slot s) { return s == Slot::a ? 3 : 5; }
[[nodiscard]] inline std::string root_label(Slot s) { return std::string("root-") + slot_char(s); }
[[nodiscard]] inline std::string verity_label(Slot s) { return root_label(s) + "-verity"; }
// Throws "slot: expected a or b, got 'x'".
[[nodiscard]] Slot parse_slot(const std::string& text);

// Type GUIDs.
[[nodiscard]] Uuid esp_type();
[[nodiscard]] Uuid data_type();  // DPS "var"
[[nodiscard]] Uuid root_type(Arch a);
[[nodiscard]] Uuid root_verity_type(Arch a);
// Which arch a root / root-verity type GUID belongs to; nullopt-like false when none.
[[nodiscard]] bool arch_of_root_type(const Uuid& type, Arch* out);

// DPS pairing rule: the root partition's UUID is the first 128 bits of the verity root
// hash, the verity partition's UUID the last 128 bits.
[[nodiscard]] Uuid root_partition_uuid(const Digest& root_hash);
[[nodiscard]] Uuid verity_partition_uuid(const Digest& root_hash);

}  // namespace osup::layout
