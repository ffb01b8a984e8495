#include "boot/boot_control.h"

#include "base/error.h"
#include "boot/grub_env.h"
#include "boot/systemd_boot.h"
#include "boot/systemd_boot_uki.h"

namespace osup {

BootControl::~BootControl() = default;

const char* to_string(SlotState s) {
  switch (s) {
    case SlotState::empty:
      return "empty";
    case SlotState::good:
      return "good";
    case SlotState::trying:
      return "trying";
    case SlotState::bad:
      return "bad";
  }
  return "?";
}

void check_entry_spec(const EntrySpec& spec) {
  auto one_line = [](const std::string& what, const std::string& v) {
    if (v.find_first_of("\n\r") != std::string::npos)
      fail("boot entry " + what + " contains a line break: '" +
           v.substr(0, v.find_first_of("\n\r")) + "...'");
  };
  if (spec.title.empty()) fail("boot entry has no title; give the OS name");
  if (spec.kernel.empty() || spec.kernel[0] != '/')
    fail("boot entry kernel '" + spec.kernel +
         "' is not an absolute ESP path like /osup/a/vmlinuz");
  if (!spec.initrd.empty() && spec.initrd[0] != '/')
    fail("boot entry initrd '" + spec.initrd + "' is not an absolute ESP path like /osup/a/initrd");
  if (spec.tries < 1) fail("boot entry needs at least 1 try, got " + std::to_string(spec.tries));
  one_line("title", spec.title);
  one_line("version", spec.version);
  one_line("kernel", spec.kernel);
  one_line("initrd", spec.initrd);
  one_line("command line", spec.cmdline);
}

std::string entry_title(const EntrySpec& spec, layout::Slot s) {
  const std::string suffix = std::string("(slot ") + layout::slot_char(s) + ")";
  if (spec.title.ends_with(suffix)) return spec.title;
  return spec.title + (spec.version.empty() ? "" : " " + spec.version) + " " + suffix;
}

std::string entry_cmdline(const EntrySpec& spec, layout::Slot s) {
  const std::string want = std::string("osup.slot=") + layout::slot_char(s);
  size_t pos = 0;
  while (pos < spec.cmdline.size()) {
    size_t end = spec.cmdline.find(' ', pos);
    if (end == std::string::npos) end = spec.cmdline.size();
    const std::string word = spec.cmdline.substr(pos, end - pos);
    pos = end + 1;
    if (word == want) return spec.cmdline;
    if (word.starts_with("osup.slot="))
      fail("boot entry of slot " + layout::slot_name(s) + " has '" + word +
           "' on its command line; it must be " + want);
  }
  return spec.cmdline + (spec.cmdline.empty() ? "" : " ") + want;
}

std::unique_ptr<BootControl> make_boot_control(const std::string& kind,
                                               std::shared_ptr<EspAccess> esp) {
  if (!esp) fail("no ESP to control the boot on");
  if (kind == "systemd-boot") return std::make_unique<SystemdBoot>(std::move(esp));
  if (kind == kSystemdBootUki) return std::make_unique<SystemdBootUki>(std::move(esp));
  auto grubenv = find_grubenv(*esp);
  if (kind == "grub")
    return std::make_unique<GrubEnv>(std::move(esp), grubenv.value_or("/grub/grubenv"));
  if (kind == "auto") {
    if (grubenv) return std::make_unique<GrubEnv>(std::move(esp), *grubenv);
    if (has_uki_entries(*esp)) return std::make_unique<SystemdBootUki>(std::move(esp));
    return std::make_unique<SystemdBoot>(std::move(esp));
  }
  fail("unknown boot loader '" + kind + "'; use systemd-boot, systemd-boot-uki, grub or auto");
}

}  // namespace osup
