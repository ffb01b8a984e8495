// The target architectures and everything that differs between them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace osup {

enum class Arch { x86_64, aarch64 };

// Accepts x86_64/amd64/x86-64 and aarch64/arm64; throws naming the value and the choices.
[[nodiscard]] Arch parse_arch(std::string_view name, const std::string& what = "arch");
[[nodiscard]] std::string arch_name(Arch a);          // "x86_64" | "aarch64"
[[nodiscard]] std::string debian_arch(Arch a);        // "amd64"  | "arm64"
[[nodiscard]] uint16_t elf_machine(Arch a);           // EM_X86_64 | EM_AARCH64
[[nodiscard]] std::string efi_arch_suffix(Arch a);    // "x64" | "aa64"
[[nodiscard]] std::string efi_fallback_name(Arch a);  // "BOOTX64.EFI" | "BOOTAA64.EFI"
[[nodiscard]] std::string systemd_boot_name(Arch a);  // "systemd-bootx64.efi" | ...aa64
[[nodiscard]] Arch host_arch();

}  // namespace osup
