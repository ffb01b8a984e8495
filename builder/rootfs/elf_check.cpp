#include "builder/rootfs/elf_check.h"

#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "builder/rootfs/overlay.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

bool is_regular(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

std::string machine_name(uint16_t machine, bool is64) {
  switch (machine) {
    case EM_X86_64:
      return "x86_64";
    case EM_AARCH64:
      return "aarch64";
    case EM_386:
      return "i386";
    case EM_ARM:
      return "arm";
    case EM_RISCV:
      return is64 ? "riscv64" : "riscv32";
    case EM_PPC64:
      return "ppc64";
    case EM_S390:
      return "s390x";
    case EM_MIPS:
      return "mips";
    default:
      return "ELF machine " + std::to_string(machine);
  }
}

// Highest version first, the way `sort -V` orders kernel versions.
bool version_greater(const std::string& a, const std::string& b) {
  return ::strverscmp(a.c_str(), b.c_str()) > 0;
}

std::string first_existing(const std::string& root, const std::vector<std::string>& candidates) {
  for (const auto& c : candidates) {
    std::string host = resolve_in_root(root, c);
    if (is_regular(host)) return host;
  }
  return "";
}

}  // namespace

std::optional<std::string> elf_machine_name(const std::string& path) {
  UniqueFd fd = open_file(path, O_RDONLY | O_CLOEXEC);
  std::array<std::byte, 20> h{};
  size_t n = read_full(fd.get(), h, path);
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(h[i]); };
  if (n < h.size() || u8(0) != 0x7f || u8(1) != 'E' || u8(2) != 'L' || u8(3) != 'F')
    return std::nullopt;
  const bool big_endian = u8(EI_DATA) == ELFDATA2MSB;
  const uint16_t machine = big_endian ? static_cast<uint16_t>(u8(18) << 8 | u8(19))
                                      : static_cast<uint16_t>(u8(19) << 8 | u8(18));
  return machine_name(machine, u8(EI_CLASS) == ELFCLASS64);
}

void check_rootfs_arch(const std::string& root, Arch expected) {
  const std::string want = arch_name(expected);
  for (const char* probe : {"/bin/sh", "/sbin/init", "/usr/bin/env"}) {
    const std::string host = resolve_in_root(root, probe);
    struct stat st {};
    if (::stat(host.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      if (std::string(probe) == "/bin/sh")
        fail("rootfs " + root + " has no /bin/sh; is it a complete root filesystem?");
      continue;
    }
    auto machine = elf_machine_name(host);
    if (!machine) {
      if (std::string(probe) == "/bin/sh")
        fail("/bin/sh in rootfs " + root + " is not an ELF binary; cannot tell its architecture");
      continue;  // /sbin/init may be a script
    }
    if (*machine != want)
      fail("rootfs is for " + *machine + " (" + probe + " is an ELF " + *machine +
           " binary) but the image arch is " + want + "; set \"arch\" in the spec or use --arch");
  }
}

std::optional<KernelFiles> find_kernel(const std::string& root) {
  // 1. /boot/vmlinuz-<ver> (Debian, Fedora), also vmlinux-/Image- on some arm64 setups.
  const std::string boot = resolve_in_root(root, "/boot");
  std::vector<std::pair<std::string, std::string>> found;  // version, host path
  std::error_code ec;
  if (fs::is_directory(boot, ec)) {
    for (const auto& e : fs::directory_iterator(boot, ec)) {
      const std::string f = e.path().filename().string();
      for (const char* prefix : {"vmlinuz-", "vmlinux-", "Image-"}) {
        if (f.starts_with(prefix) && f.size() > strlen(prefix) &&
            is_regular(resolve_in_root(root, "/boot/" + f)))
          found.emplace_back(f.substr(strlen(prefix)), resolve_in_root(root, "/boot/" + f));
      }
    }
  }
  // 2. /usr/lib/modules/<ver>/vmlinuz (kernel-install layout).
  if (found.empty()) {
    const std::string mods = resolve_in_root(root, "/usr/lib/modules");
    if (fs::is_directory(mods, ec)) {
      for (const auto& e : fs::directory_iterator(mods, ec)) {
        const std::string ver = e.path().filename().string();
        std::string k = resolve_in_root(root, "/usr/lib/modules/" + ver + "/vmlinuz");
        if (is_regular(k)) found.emplace_back(ver, k);
      }
    }
  }
  if (!found.empty()) {
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return version_greater(a.first, b.first); });
    const auto& [ver, kernel] = found.front();
    return KernelFiles{
        kernel,
        first_existing(root, {"/boot/initrd.img-" + ver, "/boot/initramfs-" + ver + ".img",
                              "/usr/lib/modules/" + ver + "/initrd"}),
        ver};
  }
  // 3. The /vmlinuz symlink alone (its target names the version).
  const std::string k = resolve_in_root(root, "/vmlinuz");
  if (!is_regular(k)) return std::nullopt;
  std::string name = fs::path(k).filename().string();
  std::string ver = name.starts_with("vmlinuz-") ? name.substr(8) : "";
  return KernelFiles{k, first_existing(root, {"/initrd.img"}), ver};
}

}  // namespace osup::build
