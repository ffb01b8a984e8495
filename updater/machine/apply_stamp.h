// When `osup apply --if-changed` (osup-apply.service at boot) has work: the machine file's
// content or the running OS changed since the last successful apply. The stamp of that
// apply lives next to the record in /var/lib/osup, on the data partition, so an OS switch
// does not lose it.
#pragma once

#include <string>

namespace osup::machine {

struct ApplyStamp {
  std::string file_sha256;  // of the machine file's bytes
  std::string os;           // IMAGE_ID and IMAGE_VERSION of the running OS
  bool operator==(const ApplyStamp&) const = default;
};

inline constexpr const char* kOsReleasePath = "/usr/lib/os-release";

// "IMAGE_ID IMAGE_VERSION" from an os-release file ("" for a missing file or keys).
[[nodiscard]] std::string os_identity(const std::string& os_release_path);
[[nodiscard]] ApplyStamp current_stamp(const std::string& machine_file,
                                       const std::string& os_release_path);
// The stamp at PATH, or an empty one (never matches) when it is missing or unreadable.
[[nodiscard]] ApplyStamp read_stamp(const std::string& path);
void write_stamp(const std::string& path, const ApplyStamp& stamp);

}  // namespace osup::machine
