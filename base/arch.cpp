#include "base/arch.h"

#include <elf.h>

#include "base/error.h"

namespace osup {

Arch parse_arch(std::string_view name, const std::string& what) {
  if (name == "x86_64" || name == "amd64" || name == "x86-64") return Arch::x86_64;
  if (name == "aarch64" || name == "arm64") return Arch::aarch64;
  fail(what + ": unknown architecture '" + std::string(name) + "'; use x86_64 or aarch64");
}

std::string arch_name(Arch a) { return a == Arch::x86_64 ? "x86_64" : "aarch64"; }
std::string debian_arch(Arch a) { return a == Arch::x86_64 ? "amd64" : "arm64"; }
uint16_t elf_machine(Arch a) { return a == Arch::x86_64 ? EM_X86_64 : EM_AARCH64; }
std::string efi_arch_suffix(Arch a) { return a == Arch::x86_64 ? "x64" : "aa64"; }
std::string efi_fallback_name(Arch a) { return a == Arch::x86_64 ? "BOOTX64.EFI" : "BOOTAA64.EFI"; }
std::string systemd_boot_name(Arch a) { return "systemd-boot" + efi_arch_suffix(a) + ".efi"; }

Arch host_arch() {
#if defined(__x86_64__)
  return Arch::x86_64;
#elif defined(__aarch64__)
  return Arch::aarch64;
#else
#error "unsupported host architecture"
#endif
}

}  // namespace osup
