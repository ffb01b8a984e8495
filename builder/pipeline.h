// `osup-build image`: spec -> rootfs -> erofs -> verity -> signed manifest -> bundle + disk.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/arch.h"
#include "base/progress.h"
#include "builder/image/bundle_compression.h"

namespace osup::build {

struct ImageOptions {
  std::string spec_path, key_path, out_dir;
  std::optional<std::string> version;  // --version overrides the spec
  std::optional<Arch> arch;            // --arch overrides the spec
  std::optional<std::string> workdir;  // default: OUT/.work-<name>-<version>-<arch>
  bool keep_workdir = false;
  // --deb: a package copied into the rootfs's /var/cache/osup/ for the spec's hooks to
  // install (images/minimal installs osup itself this way); the hooks remove it.
  std::optional<std::string> deb;
  // --overlay: a folder copied over the tree after the hooks (site configuration, test
  // fixtures); it is not part of the --incremental cache key.
  std::optional<std::string> overlay;
  bool incremental = false;  // --incremental: see builder/rootfs/cache.h
  bool disk = true;          // false (--no-disk): bundle and manifest only, no disk image
  // --bundle-compression: overrides the spec's bundle.compression.
  std::optional<BundleCompression> bundle_compression;
  ProgressMode progress = ProgressMode::automatic;
};

struct ImageOutputs {
  std::string disk, bundle, manifest;  // disk is empty with ImageOptions::disk == false
  std::string root_hash;
  bool bootable = false;                 // false when the rootfs has no kernel
  std::vector<std::string> secure_boot;  // signed UKIs and loader (spec field secure_boot)
};

ImageOutputs build_image(const ImageOptions& opts);

// Output file stem: "<name>-<version>-<arch>".
[[nodiscard]] std::string output_stem(const std::string& name, const std::string& version,
                                      Arch arch);

}  // namespace osup::build
