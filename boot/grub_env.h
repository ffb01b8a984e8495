// GRUB backend: slot state in the GRUB environment block (grubenv), which
// bootloader-hooks/grub/osup.cfg reads at boot - RAUC's variable scheme with real
// try counts:
//   ORDER="A B"      slots in preference order (the first bootable one boots)
//   A_OK=1           slot A proved itself (good): boots without counting
//   A_TRY=N          tries left while A_OK=0; the script decrements it before booting,
//                    0 = exhausted = bad (passed over)
//   OSUP_A_KERNEL, OSUP_A_INITRD, OSUP_A_CMDLINE   what to boot (empty kernel: no entry)
//   OSUP_A_TITLE, OSUP_A_VERSION, OSUP_A_GEN, OSUP_A_TRIES   bookkeeping for SlotBoot
// The block lives under two names in turn, grubenv and grubenv.1: every change writes the
// whole block, with OSUP_ENV_GEN one higher, to the name not in use, then removes the
// other (no rename over an existing file: on FAT a cut there can leave neither). The
// current block is the one with the higher OSUP_ENV_GEN; osup.cfg loads that one, and
// GRUB's own save_env (the try count) rewrites it in place.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "boot/boot_control.h"

namespace osup {

// The grubenv format: "# GRUB Environment Block\n", "name=value\n" lines (backslash
// escapes '\' and newline), '#' padding to the block size (1024 bytes, or more; see below).
class GrubEnvBlock {
 public:
  static constexpr size_t kBlockSize = 1024;
  // GRUB's load_env reads and save_env rewrites a block of any size in place; two slots
  // with long dm-verity command lines can outgrow 1024 bytes, so the block grows in
  // kBlockSize steps up to this.
  static constexpr size_t kMaxBlockSize = 8192;

  // Throws on a missing header; lines without '=' are skipped, as GRUB does.
  [[nodiscard]] static GrubEnvBlock parse(std::string_view block, const std::string& what);
  // At least min_size bytes (a block never shrinks), rounded up to kBlockSize; throws
  // beyond kMaxBlockSize.
  [[nodiscard]] std::string serialize(size_t min_size = kBlockSize) const;

  [[nodiscard]] std::optional<std::string> get(const std::string& name) const;
  [[nodiscard]] std::string get_or(const std::string& name, const std::string& fallback) const;
  // Keeps the position of an existing variable (like grub-editenv), appends new ones.
  void set(const std::string& name, const std::string& value);
  void unset(const std::string& name);
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& vars() const {
    return vars_;
  }

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

// The second name of a grubenv: "/grub/grubenv" -> "/grub/grubenv.1".
[[nodiscard]] std::string grubenv_alt_path(const std::string& env_path);
// Where the grubenv is: /grub/grubenv or /EFI/*/grubenv if it (or its .1) exists, else
// nullopt. Always the first name; GrubEnv finds the current one of the two.
[[nodiscard]] std::optional<std::string> find_grubenv(const EspAccess& esp);

class GrubEnv final : public BootControl {
 public:
  // env_path: the grubenv on the ESP (created on first change when missing).
  GrubEnv(std::shared_ptr<EspAccess> esp, std::string env_path)
      : esp_(std::move(esp)), env_path_(std::move(env_path)) {}

  [[nodiscard]] std::string name() const override { return "grub"; }
  [[nodiscard]] SlotBoot slot(layout::Slot) const override;
  [[nodiscard]] std::optional<layout::Slot> next_boot() const override;
  void disable(layout::Slot) override;
  // spec.tries must be 1..9: the GRUB script counts down with string comparisons.
  void install(layout::Slot, const EntrySpec&) override;
  void make_first(layout::Slot) override;
  void mark_good(layout::Slot) override;
  void mark_bad(layout::Slot) override;

  [[nodiscard]] const std::string& env_path() const { return env_path_; }
  // The file holding the current block (env_path() or its .1; env_path() when none).
  [[nodiscard]] std::string current_path() const;
  // The current block; empty when neither file exists; throws when neither is readable.
  [[nodiscard]] GrubEnvBlock load() const;

 private:
  struct Current {
    std::string path;  // "" when neither file exists
    GrubEnvBlock env;
  };
  [[nodiscard]] Current current() const;
  [[nodiscard]] std::optional<GrubEnvBlock> load_from(const std::string& path,
                                                      std::string* error) const;
  void store(const GrubEnvBlock& env);
  void require_entry(const GrubEnvBlock& env, layout::Slot s, const char* action) const;
  std::shared_ptr<EspAccess> esp_;
  std::string env_path_;
};

// What osup.cfg decides at boot, on a parsed environment: the first slot in ORDER with a
// kernel that is good or has tries left (decrementing its A_TRY), else - like
// systemd-boot - the first slot in ORDER with a kernel at all. Returns the slot or nullopt.
std::optional<layout::Slot> grub_pick(GrubEnvBlock& env);
// The same on the ESP's grubenv, saving the decrement back: one simulated boot.
std::optional<layout::Slot> simulate_grub_boot(EspAccess& esp, const std::string& env_path);

inline constexpr int kGrubMaxTries = 9;

}  // namespace osup
