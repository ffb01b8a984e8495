#include "format/disk_layout.h"

#include "base/error.h"

namespace osup::layout {

Slot parse_slot(const std::string& text) {
  if (text == "a" || text == "A") return Slot::a;
  if (text == "b" || text == "B") return Slot::b;
  fail("slot: expected a or b, got '" + text + "'");
}

Uuid esp_type() { return Uuid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"); }
Uuid data_type() { return Uuid::parse("4d21b016-b534-45c2-a9fb-5c16e091fd2d"); }

Uuid root_type(Arch a) {
  return Uuid::parse(a == Arch::x86_64 ? "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
                                       : "b921b045-1df0-41c3-af44-4c6f280d3fae");
}

Uuid root_verity_type(Arch a) {
  return Uuid::parse(a == Arch::x86_64 ? "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
                                       : "df3300ce-d69f-4c92-978c-9bfb0f38d820");
}

bool arch_of_root_type(const Uuid& type, Arch* out) {
  for (Arch a : {Arch::x86_64, Arch::aarch64}) {
    if (type == root_type(a)) {
      if (out) *out = a;
      return true;
    }
  }
  return false;
}

Uuid root_partition_uuid(const Digest& root_hash) {
  return Uuid::from_bytes(std::span(root_hash.data(), 16));
}

Uuid verity_partition_uuid(const Digest& root_hash) {
  return Uuid::from_bytes(std::span(root_hash.data() + 16, 16));
}

}  // namespace osup::layout
