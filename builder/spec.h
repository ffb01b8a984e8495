// The JSON image spec that drives osup-build. Relative paths are resolved against the
// folder holding the spec file.
//
// Fields (every one not marked "required" is optional; defaults in brackets):
//   name          required. OS name, [A-Za-z0-9._+~-]; becomes IMAGE_ID in os-release.
//   version       required. [A-Za-z0-9._+~-], starts with a digit; becomes IMAGE_VERSION.
//   arch          ["x86_64"] x86_64|aarch64 (also amd64|arm64). --arch overrides it.
//   compatible    ["<name>-<arch>"] the updater only installs bundles whose compatible
//                 string matches the running image's.
//   rootfs        required. Exactly one of:
//     {"tarball": PATH}    a tar, tar.gz, tar.xz or tar.zst of a complete root filesystem
//     {"directory": PATH}  a directory holding a root filesystem (copied, never modified)
//     {"debootstrap": {    a fresh Debian, cached (see below):
//        "suite":      ["bookworm"]
//        "variant":    ["minbase"]  debootstrap --variant ("" for debootstrap's default)
//        "mirror":     ["http://deb.debian.org/debian"]
//        "components": [["main"]]
//        "packages":   [[]] extra packages (--include)
//        "cache":      [$OSUP_CACHE_DIR or ~/.cache/osup] where finished bootstraps are kept
//     }}
//   overlay       [none] folder whose content is copied over the rootfs (owners/modes kept).
//   hooks         [[]] scripts run in order inside the rootfs (chroot, /bin/sh) before packing;
//                 they see OSUP_IMAGE_NAME, OSUP_IMAGE_VERSION and OSUP_IMAGE_ARCH (a hook
//                 that reads the version makes it part of the --incremental cache key).
//   filesystem    {"type": ["erofs"] erofs|squashfs,
//                  "compression": ["lz4hc" for erofs, "zstd" for squashfs]
//                      erofs: lz4hc|lz4|none; squashfs: zstd|xz|gzip|lz4|none}
//   disk          {"size": ["2G"] whole disk image, "esp": ["256M"] EFI system partition,
//                  "slot": ["768M"] each root partition (A and B)}; sizes take K, M, G, T.
//   boot          {"cmdline": [""] extra kernel command line,
//                  "tries": [3] boots a new slot gets before the loader falls back, 1..10}
//   bundle        {"compression": ["auto"] auto|zstd|none: how the update bundle carries the
//                  verity tree and root image; auto = zstd unless it saves under 10 %
//                  (builder/image/bundle_compression.h). --bundle-compression overrides it.}
//   secure_boot   [none] {"key": PATH, "cert": PATH} (both required): the Secure Boot db key
//                 and certificate (PEM; osup-build keygen --secure-boot makes them). With it
//                 the build also writes a signed UKI per slot and a signed systemd-boot
//                 (builder/uki_stage.h); without it nothing changes.
//                 "enroll": [none] {"keys": DIR (keygen --secure-boot's output: PK.auth,
//                 KEK.auth, db.auth, and db.crt equal to "cert"), "mode": ["manual"]
//                 manual|force}: the disk image's ESP carries the keys for systemd-boot's
//                 `secure-boot-enroll` (force: enrolled unattended on the first boot in
//                 setup mode; README "Secure Boot keys" has the trade-off).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/arch.h"
#include "builder/image/bundle_compression.h"
#include "builder/secure_boot.h"

namespace osup::build {

struct TarballSource {
  std::filesystem::path path;
};
struct DirectorySource {
  std::filesystem::path path;
};
struct DebootstrapSource {
  std::string suite = "bookworm", variant = "minbase", mirror = "http://deb.debian.org/debian";
  std::vector<std::string> components{"main"}, packages;
  std::optional<std::filesystem::path> cache;  // nullopt: $OSUP_CACHE_DIR or ~/.cache/osup
};

struct Spec {
  std::string name, version, compatible;
  Arch arch = Arch::x86_64;
  std::filesystem::path spec_dir;  // folder of the spec file; relative paths start here
  std::variant<TarballSource, DirectorySource, DebootstrapSource> rootfs;
  std::optional<std::filesystem::path> overlay;
  std::vector<std::filesystem::path> hooks;
  std::string fs_type = "erofs", compression = "lz4hc";
  uint64_t disk_size = 2ull << 30, esp_size = 256ull << 20, slot_size = 768ull << 20;
  std::string cmdline;
  int tries = 3;
  BundleCompression bundle_compression = BundleCompression::automatic;
  std::optional<SecureBootKey> secure_boot;
  std::optional<SecureBootEnroll> secure_boot_enroll;  // only with secure_boot
};

// Reads and validates the spec at PATH; errors start with "spec PATH: ".
[[nodiscard]] Spec load_spec(const std::string& path);
// Validates a parsed spec; errors name the field ("field 'disk.size': invalid size '2Q'; ...").
[[nodiscard]] Spec parse_spec(const nlohmann::json& json, const std::filesystem::path& spec_dir);

// --arch on the command line: changes the arch and, when "compatible" was the default
// "<name>-<arch>", follows it.
void override_arch(Spec& spec, Arch arch);

}  // namespace osup::build
