#include "builder/rootfs/source.h"

#include <filesystem>

#include "base/error.h"
#include "base/process.h"
#include "builder/rootfs/debootstrap.h"
#include "builder/rootfs/tarball.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

void require_empty_dir(const std::string& dest) {
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (!fs::is_directory(dest)) fail(dest + " is not a directory");
  if (!fs::is_empty(dest)) fail(dest + " is not empty; the rootfs must start from an empty folder");
}

}  // namespace

void populate_rootfs(const Spec& spec, const std::string& dest) {
  require_empty_dir(dest);
  if (const auto* t = std::get_if<TarballSource>(&spec.rootfs)) {
    extract_tarball(t->path.string(), dest);
  } else if (const auto* d = std::get_if<DirectorySource>(&spec.rootfs)) {
    with_context("copying rootfs directory " + d->path.string(), [&] {
      // dest is empty and ours, so cp cannot be tricked into writing through a symlink.
      run_checked({"cp", "-a", "--reflink=auto", d->path.string() + "/.", dest + "/"});
    });
  } else {
    debootstrap(std::get<DebootstrapSource>(spec.rootfs), spec.arch, dest);
  }
}

}  // namespace osup::build
