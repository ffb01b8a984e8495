#include "builder/pipeline.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/fd.h"
#include "base/mapped_file.h"
#include "base/process.h"
#include "base/size.h"
#include "boot/boot_control.h"
#include "boot/esp_access.h"
#include "boot/publish_slot.h"
#include "boot/systemd_boot_uki.h"
#include "builder/image/bundle_compression.h"
#include "builder/image/disk.h"
#include "builder/image/filesystem.h"
#include "builder/rootfs/cache.h"
#include "builder/rootfs/elf_check.h"
#include "builder/rootfs/hooks.h"
#include "builder/rootfs/overlay.h"
#include "builder/rootfs/prepare.h"
#include "builder/rootfs/source.h"
#include "builder/rootfs/tarball.h"
#include "builder/spec.h"
#include "builder/stage_support.h"
#include "builder/uki_stage.h"
#include "format/bundle_writer.h"
#include "format/initrd_pack.h"
#include "format/manifest.h"
#include "format/signature.h"
#include "format/verity.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

// What the build starts from; everything later is derived from it.
struct Inputs {
  StageClock clock;  // first, so the first stage's time includes loading the inputs
  Spec spec;
  sig::PrivateKey key;
  std::optional<uint64_t> epoch;  // SOURCE_DATE_EPOCH
  std::string stem;               // output file stem
  std::string seed;               // salts and UUIDs; "" = random
};

// The state the stages hand on, in the order they fill it in.
struct Build : Inputs {
  Build(const ImageOptions& o, Inputs in) : Inputs(std::move(in)), opts(o), log(o.progress) {}

  const ImageOptions& opts;
  StepLog log;
  fs::path work;        // the workdir
  std::string rootdir;  // the rootfs tree, removed once packed
  // Kernel, initrd and loader, copied out of the tree (they go to the ESP and the bundle).
  std::optional<KernelFiles> kernel;
  std::optional<std::string> loader;
  std::string kernel_copy, initrd_copy, uki_stub;  // uki_stub: only with secure_boot
  std::string root_img, verity_img;
  uint64_t root_size = 0;
  BackgroundRemoval rootfs_removal;
  verity::Params verity_params;
  Digest root_hash{};
  Manifest manifest;
  std::string manifest_json, signature;
  ImageOutputs out;
};

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

// Spec (with the command line's overrides) and key.
Inputs load_inputs(const ImageOptions& opts) {
  StageClock clock;
  Spec spec = load_spec(opts.spec_path);
  if (opts.version) spec.version = *opts.version;
  if (opts.arch) override_arch(spec, *opts.arch);
  if (spec.compatible.empty()) spec.compatible = spec.name + "-" + arch_name(spec.arch);
  // Load the key first: a wrong key should fail in a second, not after a 10-minute build.
  sig::PrivateKey key = with_context("signing key " + opts.key_path,
                                     [&] { return sig::PrivateKey::load(opts.key_path); });
  const auto epoch = source_date_epoch();
  std::string stem = output_stem(spec.name, spec.version, spec.arch);
  // Reproducible builds derive every salt and UUID from the image identity; others are random.
  std::string seed = epoch ? stem + "@" + std::to_string(*epoch) : "";
  return Inputs{clock, std::move(spec), std::move(key), epoch, std::move(stem), std::move(seed)};
}

void make_workdir(Build& b) {
  fs::create_directories(b.opts.out_dir);
  b.work =
      b.opts.workdir ? fs::path(*b.opts.workdir) : fs::path(b.opts.out_dir) / (".work-" + b.stem);
  fs::remove_all(b.work);
  fs::create_directories(b.work);
  b.rootdir = (b.work / "rootfs").string();
  fs::create_directories(b.rootdir);
  if (b.opts.deb && !fs::is_regular_file(*b.opts.deb))
    fail("--deb " + *b.opts.deb + " is not a file; build the package with cpack first");
  if (b.opts.overlay && !fs::is_directory(*b.opts.overlay))
    fail("--overlay " + *b.opts.overlay + " is not a directory");
}

// The spec's source, overlay, --deb and hooks: the part --incremental caches.
void build_rootfs_tree(Build& b) {
  const Spec& spec = b.spec;
  b.log.step("populating rootfs for " + arch_name(spec.arch));
  with_context("populating rootfs", [&] { populate(spec, b.rootdir, b.epoch.has_value()); });
  if (spec.overlay)
    with_context("applying overlay", [&] { apply_overlay(spec.overlay->string(), b.rootdir); });
  if (b.opts.deb) {
    const fs::path cache = fs::path(b.rootdir) / "var/cache/osup";
    fs::create_directories(cache);
    fs::copy_file(*b.opts.deb, cache / fs::path(*b.opts.deb).filename(),
                  fs::copy_options::overwrite_existing);
  }
  with_context("checking rootfs", [&] { check_rootfs_arch(b.rootdir, spec.arch); });
  if (!spec.hooks.empty()) with_context("running hooks", [&] { run_hooks(spec, b.rootdir); });
}

void populate_stage(Build& b) {
  // Only the hooks make the tree worth caching; a plain source is as quick to unpack.
  std::optional<std::string> cached_tree;
  if (b.opts.incremental && !b.spec.hooks.empty())
    cached_tree = with_context("computing the rootfs cache key", [&] {
      return hooked_rootfs_cache_path(b.spec, hooked_rootfs_key(b.spec, b.opts.deb));
    });
  if (cached_tree && fs::exists(*cached_tree)) {
    b.log.step("reusing rootfs " + *cached_tree + " (--incremental)");
    with_context("extracting cached rootfs " + *cached_tree,
                 [&] { extract_tarball(*cached_tree, b.rootdir); });
  } else {
    build_rootfs_tree(b);
    if (cached_tree) {
      b.log.step("caching rootfs as " + *cached_tree);
      store_hooked_rootfs(b.rootdir, *cached_tree);
    }
  }
  if (b.opts.overlay)
    with_context("applying --overlay", [&] { apply_overlay(*b.opts.overlay, b.rootdir); });
  b.clock.done("populate");
}

// Kernel, initrd and loader leave the root for the ESP; copy them out before the root
// is packed (and removed).
void extract_boot_files(Build& b) {
  const Arch arch = b.spec.arch;
  b.kernel = find_kernel(b.rootdir);
  b.loader = find_systemd_boot(b.rootdir, arch);
  if (!b.kernel) warn("rootfs has no kernel in /boot; the disk image will not boot");
  if (!b.loader)
    warn("rootfs has no " + systemd_boot_name(arch) +
         " (Debian package systemd-boot-efi); the disk image will not boot");
  if (b.spec.secure_boot) b.uki_stub = copy_uki_stub(b.rootdir, arch, b.work.string());
  if (b.loader) {
    const std::string copy = (b.work / systemd_boot_name(arch)).string();
    fs::copy_file(*b.loader, copy, fs::copy_options::overwrite_existing);
    b.loader = copy;
  }
  if (b.kernel) {
    b.kernel_copy = (b.work / "vmlinuz").string();
    fs::copy_file(b.kernel->kernel, b.kernel_copy, fs::copy_options::overwrite_existing);
    if (!b.kernel->initrd.empty()) {
      b.initrd_copy = (b.work / "initrd").string();
      // An uncompressed initrd (dracut --no-compress) is packed here, delta-friendly
      // (format/initrd_pack.h); one compressed by dracut ships as it is.
      if (initrd::is_raw_cpio(MappedFile(b.kernel->initrd).bytes())) {
        const uint64_t raw = fs::file_size(b.kernel->initrd);
        const uint64_t packed = initrd::pack_file(b.kernel->initrd, b.initrd_copy);
        b.log.step("packed the initrd: " + format_size(raw) + " -> " + format_size(packed));
      } else {
        fs::copy_file(b.kernel->initrd, b.initrd_copy, fs::copy_options::overwrite_existing);
      }
      // The booted initrd is the ESP's; a second copy in the root is dead weight (30 MiB
      // for the minimal image) and, being generated rather than packaged, the part of
      // the root most likely to change between builds, which would swell every delta.
      fs::remove(b.kernel->initrd);
    }
  }
}

void prepare_stage(Build& b) {
  PrepareOptions prep{b.spec.name, b.spec.version, b.key.public_pem(), b.key.key_id(), b.epoch};
  with_context("preparing rootfs", [&] { prepare_rootfs(b.rootdir, prep); });
  b.clock.done("prepare");
}

void pack_filesystem(Build& b) {
  const Spec& spec = b.spec;
  b.log.step("packing root filesystem (" + spec.fs_type + ", " + spec.compression + ")");
  b.root_img = (b.work / "root.img").string();
  b.root_size = with_context("packing root filesystem", [&] {
    return make_fs_image(b.rootdir, b.root_img, {spec.fs_type, spec.compression, b.epoch, b.seed});
  });
  if (b.root_size > spec.slot_size)
    fail("root filesystem is " + format_size(b.root_size) + " but disk.slot is " +
         format_size(spec.slot_size) + "; raise disk.slot in the spec or slim the rootfs");
  b.clock.done("mkfs");
  // The packed rootfs is not needed any more.
  if (!b.opts.keep_workdir) b.rootfs_removal.start(b.rootdir);
}

void compute_verity(Build& b) {
  b.log.step("computing dm-verity hash tree");
  b.verity_img = (b.work / "root.verity").string();
  b.verity_params = verity::make_params(b.root_size, b.seed);
  b.root_hash = with_context("computing verity hash tree", [&] {
    UniqueFd data = open_file(b.root_img, O_RDONLY);
    UniqueFd hash = open_file(b.verity_img, O_RDWR | O_CREAT | O_TRUNC);
    Progress progress("verity", b.root_size, b.opts.progress);
    // No fsync: like root.img, the tree is a temporary; what must last (bundle, disk) is synced.
    return verity::build(data.get(), hash.get(), b.verity_params, &progress);
  });
  b.clock.done("verity");
}

// The verity tree and root go zstd-compressed or as they are:
// builder/image/bundle_compression.h.
Payload image_payload(const Build& b, PayloadKind kind, const std::string& file,
                      const std::string& path) {
  const BundleCompression mode = b.opts.bundle_compression.value_or(b.spec.bundle_compression);
  const CompressionChoice c = choose_compression(mode, path, kBundleZstdLevel);
  if (c.estimated_savings >= 0)
    b.log.step("bundle: " + to_string(kind) + (c.compress ? " zstd" : " uncompressed") +
               " (zstd would save ~" + std::to_string(std::lround(c.estimated_savings * 100)) +
               " %, auto wants >= " + std::to_string(std::lround(kAutoMinSavings * 100)) + " %)");
  return describe_payload(kind, c.compress ? file + ".zst" : file, path,
                          c.compress ? Compression::zstd : Compression::none);
}

// The manifest, without signing it: the Secure Boot stage adds the UKIs' payloads first.
void describe(Build& b) {
  const Spec& spec = b.spec;
  Manifest& m = b.manifest;
  m.name = spec.name;
  m.version = spec.version;
  m.arch = arch_name(spec.arch);
  m.compatible = spec.compatible;
  m.filesystem = spec.fs_type;
  m.created = b.epoch
                  ? *b.epoch
                  : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  m.verity.root_hash = to_hex(b.root_hash);
  m.verity.salt = to_hex(b.verity_params.salt);
  m.verity.uuid = b.verity_params.uuid.str();
  m.verity.data_size = b.root_size;
  m.verity.hash_size = fs::file_size(b.verity_img);
  m.boot.cmdline = spec.cmdline;
  m.boot.tries = spec.tries;
  // Small payloads first: the updater wants the verity tree before the root streams past.
  if (b.kernel) {
    m.boot.kernel_version = b.kernel->version;
    m.payloads.push_back(
        describe_payload(PayloadKind::kernel, "vmlinuz", b.kernel_copy, Compression::none));
    if (!b.initrd_copy.empty())
      m.payloads.push_back(
          describe_payload(PayloadKind::initrd, "initrd", b.initrd_copy, Compression::none));
  }
  m.payloads.push_back(image_payload(b, PayloadKind::verity, "root.verity", b.verity_img));
  m.payloads.push_back(image_payload(b, PayloadKind::root, "root." + spec.fs_type, b.root_img));
  const fs::path out_dir(b.opts.out_dir);
  b.out.root_hash = m.verity.root_hash;
  b.out.bootable = b.kernel && b.loader;
  b.out.bundle = (out_dir / (b.stem + ".osup")).string();
  if (b.opts.disk) b.out.disk = (out_dir / (b.stem + ".img")).string();
  b.out.manifest = (out_dir / (b.stem + ".manifest.json")).string();
}

// With `secure_boot`: the signed UKIs of both slots (their command lines hold the root
// hash) become payloads right after the kernel and initrd, so the signed manifest names
// their SHA-256 (builder/uki_stage.h says why one per slot).
void secure_boot_stage(Build& b) {
  b.out.secure_boot =
      write_signed_boot_files(*b.spec.secure_boot, b.manifest, b.spec.arch,
                              {b.uki_stub, b.kernel_copy, b.initrd_copy, b.loader.value_or(""),
                               b.opts.out_dir, b.stem, b.work.string()});
  auto& ps = b.manifest.payloads;
  const auto at = std::find_if(ps.begin(), ps.end(),
                               [](const Payload& p) { return p.kind == PayloadKind::verity; });
  ps.insert(at, {image_payload(b, PayloadKind::uki_a, "slot-a.efi", b.out.secure_boot[0]),
                 image_payload(b, PayloadKind::uki_b, "slot-b.efi", b.out.secure_boot[1])});
}

void sign(Build& b) {
  b.manifest_json = b.manifest.to_json();
  b.signature = b.key.sign(b.manifest_json);
  b.clock.done("describe");
}

// write_signed_boot_files' outputs: the UKIs of slots a and b, then the loader.
std::string signed_uki(const Build& b, size_t slot) {
  return b.out.secure_boot.empty() ? "" : b.out.secure_boot.at(slot);
}
std::optional<std::string> loader_for_esp(const Build& b) {
  if (b.out.secure_boot.empty() || !b.loader) return b.loader;
  return b.out.secure_boot.back();
}

void write_bundle(Build& b) {
  b.log.step("writing bundle " + b.out.bundle);
  with_context("writing bundle " + b.out.bundle, [&] {
    BundleWriter writer(b.out.bundle);
    writer.write_header(b.manifest_json, b.signature);
    const std::map<PayloadKind, std::string> sources = {
        {PayloadKind::kernel, b.kernel_copy},   {PayloadKind::initrd, b.initrd_copy},
        {PayloadKind::uki_a, signed_uki(b, 0)}, {PayloadKind::uki_b, signed_uki(b, 1)},
        {PayloadKind::verity, b.verity_img},    {PayloadKind::root, b.root_img}};
    for (const Payload& p : b.manifest.payloads) {
      Progress progress(
          (p.compression == Compression::zstd ? "compress " : "copy ") + to_string(p.kind), p.size,
          b.opts.progress);
      writer.add_payload(p, sources.at(p.kind), kBundleZstdLevel, &progress);
    }
    writer.finish();
  });
  b.clock.done("bundle");
}

// The ESP with the loader and slot a published by the code `osup switch` uses later.
void write_esp(const Build& b, const std::string& esp_img) {
  const std::shared_ptr<EspAccess> esp = create_esp_image(esp_img, b.spec.esp_size, b.seed);
  // The factory slot starts out good: it is the only slot, there is nothing to fall back to.
  // A Secure Boot image gets the signed UKI as a Type #2 entry instead of kernel and initrd.
  const std::string uki = signed_uki(b, 0);
  if (auto loader = loader_for_esp(b))
    install_systemd_boot(*esp, *loader, b.spec.arch, !uki.empty());
  if (b.spec.secure_boot_enroll) install_enrollment_keys(*esp, *b.spec.secure_boot_enroll);
  auto boot = make_boot_control(uki.empty() ? "systemd-boot" : kSystemdBootUki, esp);
  if (publish_slot(
          *esp, *boot, layout::Slot::a,
          SlotRelease{b.manifest, b.manifest_json, b.signature, b.kernel_copy, b.initrd_copy, uki}))
    boot->mark_good(layout::Slot::a);
}

void write_disk(Build& b) {
  b.log.step("writing disk image " + b.out.disk);
  with_context("writing disk image " + b.out.disk, [&] {
    const std::string esp_img = (b.work / "esp.img").string();
    write_esp(b, esp_img);
    const Spec& spec = b.spec;
    DiskPlan plan = plan_disk(spec.arch, spec.disk_size, spec.esp_size, spec.slot_size, b.seed);
    plan.root_a_uuid = layout::root_partition_uuid(b.root_hash);
    plan.verity_a_uuid = layout::verity_partition_uuid(b.root_hash);
    write_disk_image(b.out.disk, plan, DiskContents{esp_img, b.root_img, b.verity_img});
  });
  b.clock.done("disk");
}

void finish(Build& b) {
  atomic_write_file(b.out.manifest, b.manifest_json);
  b.rootfs_removal.wait();
  if (!b.opts.keep_workdir) fs::remove_all(b.work);
  b.clock.done("cleanup");
}

}  // namespace

std::string output_stem(const std::string& name, const std::string& version, Arch arch) {
  return name + "-" + version + "-" + arch_name(arch);
}

ImageOutputs build_image(const ImageOptions& opts) {
  Build b(opts, load_inputs(opts));
  make_workdir(b);
  populate_stage(b);
  extract_boot_files(b);
  prepare_stage(b);
  pack_filesystem(b);
  compute_verity(b);
  describe(b);
  if (b.spec.secure_boot) secure_boot_stage(b);
  sign(b);
  write_bundle(b);
  if (opts.disk) write_disk(b);
  finish(b);
  return b.out;
}

}  // namespace osup::build
