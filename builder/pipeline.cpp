#include "builder/pipeline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "builder/image/bundle_compression.h"
#include "builder/image/disk.h"
#include "builder/rootfs/elf_check.h"
#include "builder/image/filesystem.h"
#include "builder/rootfs/cache.h"
#include "builder/rootfs/prepare.h"
#include "builder/rootfs/source.h"
#include "builder/spec.h"
#include "format/bundle_writer.h"
#include "base/error.h"
#include "base/fd.h"
#include "format/manifest.h"
#include "base/process.h"
#include "format/signature.h"
#include "base/size.h"
#include "format/verity.h"
#include "boot/boot_control.h"
#include "boot/esp_access.h"
#include "boot/publish_slot.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

// Steps are announced on a terminal only; scripts and CI see warnings and errors alone.
class StepLog {
 public:
  explicit StepLog(ProgressMode mode)
      : on_(mode == ProgressMode::bar ||
            (mode == ProgressMode::automatic && ::isatty(STDERR_FILENO))) {}
  void step(const std::string& text) const {
    if (on_) std::fprintf(stderr, "osup-build: %s\n", text.c_str());
  }

 private:
  bool on_;
};

// OSUP_TIMING=1 prints the seconds each stage took (bench/build reports them).
class StageClock {
 public:
  StageClock() : on_(std::getenv("OSUP_TIMING") != nullptr), t_(Clock::now()) {}
  void done(const char* stage) {
    if (!on_) return;
    const auto now = Clock::now();
    std::fprintf(stderr, "osup-build: timing: %-10s %7.3f s\n", stage,
                 std::chrono::duration<double>(now - t_).count());
    t_ = now;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool on_;
  Clock::time_point t_;
};

// Removes a folder on its own thread; the destructor waits. Deleting a 200 MB rootfs copy
// costs a few tenths of a second of kernel time that overlap with hashing and compressing.
class BackgroundRemoval {
 public:
  BackgroundRemoval() = default;
  BackgroundRemoval(const BackgroundRemoval&) = delete;
  BackgroundRemoval& operator=(const BackgroundRemoval&) = delete;
  ~BackgroundRemoval() { wait(); }
  void wait() {
    if (t_.joinable()) t_.join();
  }
  void start(const std::string& dir) {
    t_ = std::thread([dir] {
      std::error_code ec;  // what is left is removed with the workdir at the end
      fs::remove_all(dir, ec);
    });
  }

 private:
  std::thread t_;
};

void warn(const std::string& text) {
  std::fprintf(stderr, "osup-build: warning: %s\n", text.c_str());
}

std::optional<uint64_t> source_date_epoch() {
  const char* v = std::getenv("SOURCE_DATE_EPOCH");
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (*end) fail("SOURCE_DATE_EPOCH must be a number of seconds, got '" + std::string(v) + "'");
  return n;
}

// Where systemd-boot-efi puts the loader inside a Debian rootfs.
std::optional<std::string> find_systemd_boot(const std::string& root, Arch arch) {
  fs::path p = fs::path(root) / "usr/lib/systemd/boot/efi" / systemd_boot_name(arch);
  if (fs::exists(p)) return p.string();
  return std::nullopt;
}

// A directory rootfs can be hard-linked instead of copied when nothing writes into its
// files: prepare_rootfs only unlinks and creates files, except when it clamps mtimes
// (SOURCE_DATE_EPOCH), and hooks and overlays may write anywhere. The links share the
// source's inodes, so mkfs.erofs makes the same image; they spare writing (and deleting)
// the whole rootfs once more, which costs as much as a third of a build.
void populate(const Spec& spec, const std::string& rootdir, bool epoch) {
  const auto* dir = std::get_if<DirectorySource>(&spec.rootfs);
  struct stat src {
  }, dst{};
  const bool link = dir && !epoch && !spec.overlay && spec.hooks.empty() &&
                    ::stat(dir->path.c_str(), &src) == 0 && ::stat(rootdir.c_str(), &dst) == 0 &&
                    src.st_dev == dst.st_dev && fs::is_empty(rootdir);
  if (!link) return populate_rootfs(spec, rootdir);
  with_context("linking rootfs directory " + dir->path.string(), [&] {
    run_checked({"cp", "-al", dir->path.string() + "/.", rootdir + "/"});
  });
}

}  // namespace

std::string output_stem(const std::string& name, const std::string& version, Arch arch) {
  return name + "-" + version + "-" + arch_name(arch);
}

ImageOutputs build_image(const ImageOptions& opts) {
  StepLog log(opts.progress);
  StageClock clock;
  Spec spec = load_spec(opts.spec_path);
  if (opts.version) spec.version = *opts.version;
  if (opts.arch) override_arch(spec, *opts.arch);
  if (spec.compatible.empty()) spec.compatible = spec.name + "-" + arch_name(spec.arch);
  // Load the key first: a wrong key should fail in a second, not after a 10-minute build.
  sig::PrivateKey key = with_context("signing key " + opts.key_path,
                                     [&] { return sig::PrivateKey::load(opts.key_path); });

  const auto epoch = source_date_epoch();
  const std::string stem = output_stem(spec.name, spec.version, spec.arch);
  // Reproducible builds derive every salt and UUID from the image identity; others are random.
  const std::string seed = epoch ? stem + "@" + std::to_string(*epoch) : "";

  fs::create_directories(opts.out_dir);
  const fs::path work =
      opts.workdir ? fs::path(*opts.workdir) : fs::path(opts.out_dir) / (".work-" + stem);
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string rootdir = (work / "rootfs").string();
  fs::create_directories(rootdir);

  if (opts.deb && !fs::is_regular_file(*opts.deb))
    fail("--deb " + *opts.deb + " is not a file; build the package with cpack first");
  if (opts.overlay && !fs::is_directory(*opts.overlay))
    fail("--overlay " + *opts.overlay + " is not a directory");
  // Only the hooks make the tree worth caching; a plain source is as quick to unpack.
  std::optional<std::string> cached_tree;
  if (opts.incremental && !spec.hooks.empty())
    cached_tree = with_context("computing the rootfs cache key", [&] {
      return hooked_rootfs_cache_path(spec, hooked_rootfs_key(spec, opts.deb));
    });
  if (cached_tree && fs::exists(*cached_tree)) {
    log.step("reusing rootfs " + *cached_tree + " (--incremental)");
    with_context("extracting cached rootfs " + *cached_tree,
                 [&] { extract_tarball(*cached_tree, rootdir); });
  } else {
    log.step("populating rootfs for " + arch_name(spec.arch));
    with_context("populating rootfs", [&] { populate(spec, rootdir, epoch.has_value()); });
    if (spec.overlay)
      with_context("applying overlay", [&] { apply_overlay(spec.overlay->string(), rootdir); });
    if (opts.deb) {
      const fs::path cache = fs::path(rootdir) / "var/cache/osup";
      fs::create_directories(cache);
      fs::copy_file(*opts.deb, cache / fs::path(*opts.deb).filename(),
                    fs::copy_options::overwrite_existing);
    }
    with_context("checking rootfs", [&] { check_rootfs_arch(rootdir, spec.arch); });
    if (!spec.hooks.empty()) with_context("running hooks", [&] { run_hooks(spec, rootdir); });
    if (cached_tree) {
      log.step("caching rootfs as " + *cached_tree);
      store_hooked_rootfs(rootdir, *cached_tree);
    }
  }
  if (opts.overlay)
    with_context("applying --overlay", [&] { apply_overlay(*opts.overlay, rootdir); });
  clock.done("populate");

  std::optional<KernelFiles> kernel = find_kernel(rootdir);
  std::optional<std::string> loader = find_systemd_boot(rootdir, spec.arch);
  if (!kernel) warn("rootfs has no kernel in /boot; the disk image will not boot");
  if (!loader)
    warn("rootfs has no " + systemd_boot_name(spec.arch) +
         " (Debian package systemd-boot-efi); the disk image will not boot");
  // Kernel, initrd and loader leave the root for the ESP; copy them out before the root
  // is packed (and removed).
  std::string kernel_copy, initrd_copy;
  if (loader) {
    const std::string copy = (work / systemd_boot_name(spec.arch)).string();
    fs::copy_file(*loader, copy, fs::copy_options::overwrite_existing);
    loader = copy;
  }
  if (kernel) {
    kernel_copy = (work / "vmlinuz").string();
    fs::copy_file(kernel->kernel, kernel_copy, fs::copy_options::overwrite_existing);
    if (!kernel->initrd.empty()) {
      initrd_copy = (work / "initrd").string();
      fs::copy_file(kernel->initrd, initrd_copy, fs::copy_options::overwrite_existing);
    }
  }

  PrepareOptions prep{spec.name, spec.version, key.public_pem(), key.key_id(), epoch};
  with_context("preparing rootfs", [&] { prepare_rootfs(rootdir, prep); });
  clock.done("prepare");

  log.step("packing root filesystem (" + spec.fs_type + ", " + spec.compression + ")");
  const std::string root_img = (work / "root.img").string();
  const uint64_t root_size = with_context("packing root filesystem", [&] {
    return make_fs_image(rootdir, root_img, {spec.fs_type, spec.compression, epoch, seed});
  });
  if (root_size > spec.slot_size)
    fail("root filesystem is " + format_size(root_size) + " but disk.slot is " +
         format_size(spec.slot_size) + "; raise disk.slot in the spec or slim the rootfs");
  clock.done("mkfs");
  BackgroundRemoval rootfs_removal;  // the packed rootfs is not needed any more
  if (!opts.keep_workdir) rootfs_removal.start(rootdir);

  log.step("computing dm-verity hash tree");
  const std::string verity_img = (work / "root.verity").string();
  verity::Params vp = verity::make_params(root_size, seed);
  Digest root_hash = with_context("computing verity hash tree", [&] {
    UniqueFd data = open_file(root_img, O_RDONLY);
    UniqueFd hash = open_file(verity_img, O_RDWR | O_CREAT | O_TRUNC);
    Progress progress("verity", root_size, opts.progress);
    // No fsync: like root.img, the tree is a temporary; what must last (bundle, disk) is synced.
    return verity::build(data.get(), hash.get(), vp, &progress);
  });
  clock.done("verity");

  Manifest m;
  m.name = spec.name;
  m.version = spec.version;
  m.arch = arch_name(spec.arch);
  m.compatible = spec.compatible;
  m.filesystem = spec.fs_type;
  m.created = epoch ? *epoch
                    : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  m.verity.root_hash = to_hex(root_hash);
  m.verity.salt = to_hex(vp.salt);
  m.verity.uuid = vp.uuid.str();
  m.verity.data_size = root_size;
  m.verity.hash_size = fs::file_size(verity_img);
  m.boot.cmdline = spec.cmdline;
  m.boot.tries = spec.tries;
  // Small payloads first: the updater wants the verity tree before the root streams past.
  if (kernel) {
    m.boot.kernel_version = kernel->version;
    m.payloads.push_back(describe_payload(PayloadKind::kernel, "vmlinuz", kernel_copy, Compression::none));
    if (!initrd_copy.empty())
      m.payloads.push_back(describe_payload(PayloadKind::initrd, "initrd", initrd_copy, Compression::none));
  }
  // The verity tree and root go zstd-compressed or as they are: builder/bundle_compression.h.
  const BundleCompression bundle_mode = opts.bundle_compression.value_or(spec.bundle_compression);
  auto image_payload = [&](PayloadKind kind, const std::string& file, const std::string& path) {
    const CompressionChoice c = choose_compression(bundle_mode, path, kBundleZstdLevel);
    if (c.estimated_savings >= 0)
      log.step("bundle: " + to_string(kind) + (c.compress ? " zstd" : " uncompressed") +
               " (zstd would save ~" + std::to_string(std::lround(c.estimated_savings * 100)) +
               " %, auto wants >= " + std::to_string(std::lround(kAutoMinSavings * 100)) + " %)");
    return describe_payload(kind, c.compress ? file + ".zst" : file, path,
                            c.compress ? Compression::zstd : Compression::none);
  };
  m.payloads.push_back(image_payload(PayloadKind::verity, "root.verity", verity_img));
  m.payloads.push_back(image_payload(PayloadKind::root, "root." + spec.fs_type, root_img));
  const std::string manifest_json = m.to_json();
  const std::string signature = key.sign(manifest_json);
  clock.done("describe");

  ImageOutputs out;
  out.root_hash = m.verity.root_hash;
  out.bootable = kernel && loader;
  out.bundle = (fs::path(opts.out_dir) / (stem + ".osup")).string();
  if (opts.disk) out.disk = (fs::path(opts.out_dir) / (stem + ".img")).string();
  out.manifest = (fs::path(opts.out_dir) / (stem + ".manifest.json")).string();

  log.step("writing bundle " + out.bundle);
  with_context("writing bundle " + out.bundle, [&] {
    BundleWriter writer(out.bundle);
    writer.write_header(manifest_json, signature);
    const std::map<PayloadKind, std::string> sources = {{PayloadKind::kernel, kernel_copy},
                                                         {PayloadKind::initrd, initrd_copy},
                                                         {PayloadKind::verity, verity_img},
                                                         {PayloadKind::root, root_img}};
    for (const Payload& p : m.payloads) {
      Progress progress(
          (p.compression == Compression::zstd ? "compress " : "copy ") + to_string(p.kind), p.size,
          opts.progress);
      writer.add_payload(p, sources.at(p.kind), kBundleZstdLevel, &progress);
    }
    writer.finish();
  });
  clock.done("bundle");

  if (opts.disk) {
    log.step("writing disk image " + out.disk);
    with_context("writing disk image " + out.disk, [&] {
      const std::string esp_img = (work / "esp.img").string();
      {
        auto esp = create_esp_image(esp_img, spec.esp_size, seed);
        if (loader) install_systemd_boot(*esp, *loader, spec.arch);
        // The factory slot is published by the code `osup switch` uses later. It starts out
        // good: it is the only slot, there is nothing to fall back to.
        std::shared_ptr<EspAccess> shared = std::move(esp);
        auto boot = make_boot_control("systemd-boot", shared);
        if (publish_slot(*shared, *boot, layout::Slot::a,
                         SlotRelease{m, manifest_json, signature, kernel_copy, initrd_copy}))
          boot->mark_good(layout::Slot::a);
      }

      DiskPlan plan = plan_disk(spec.arch, spec.disk_size, spec.esp_size, spec.slot_size, seed);
      plan.root_a_uuid = layout::root_partition_uuid(root_hash);
      plan.verity_a_uuid = layout::verity_partition_uuid(root_hash);
      write_disk_image(out.disk, plan, DiskContents{esp_img, root_img, verity_img});
    });
    clock.done("disk");
  }
  atomic_write_file(out.manifest, manifest_json);

  rootfs_removal.wait();
  if (!opts.keep_workdir) fs::remove_all(work);
  clock.done("cleanup");
  return out;
}

}  // namespace osup::build
