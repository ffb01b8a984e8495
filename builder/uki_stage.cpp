#include "builder/uki_stage.h"

#include <filesystem>

#include "base/error.h"
#include "base/process.h"
#include "boot/slot_boot.h"
#include "boot/systemd_boot.h"
#include "boot/uki.h"

namespace fs = std::filesystem;

namespace osup::build {

std::string copy_uki_stub(const std::string& rootdir, Arch arch, const std::string& work) {
  return with_context("secure_boot", [&] {
    (void)require_tool("sbsign");
    const std::string stub = uki_stub_in_root(rootdir, arch);
    std::string copy = work + "/" + fs::path(stub).filename().string();
    fs::copy_file(stub, copy, fs::copy_options::overwrite_existing);
    return copy;
  });
}

std::vector<std::string> write_signed_boot_files(const SecureBootKey& key, const Manifest& m,
                                                 Arch arch, const SignedBootInputs& in) {
  return with_context("secure_boot", [&] {
    if (in.kernel.empty()) fail("the rootfs has no kernel in /boot to put in a UKI");
    if (in.loader.empty())
      fail("the rootfs has no " + systemd_boot_name(arch) +
           " to sign; add the Debian package systemd-boot-efi to the image");
    std::vector<std::string> out;
    for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) {
      const std::string name = std::string("slot-") + layout::slot_char(s) + ".efi";
      const std::string unsigned_uki = in.work + "/" + name;
      assemble_uki({in.stub, uki_osrel(m, s), slot_cmdline(m, s), in.kernel, in.initrd}, arch,
                   unsigned_uki);
      out.push_back(in.out_dir + "/" + in.stem + "-" + name);
      sign_efi(key, unsigned_uki, out.back());
    }
    out.push_back(in.out_dir + "/" + in.stem + "-" + systemd_boot_name(arch));
    sign_efi(key, in.loader, out.back());
    for (const std::string& f : out)
      if (!efi_signature_verifies(key.cert, f))
        fail(f + " does not verify with " + key.cert +
             " after signing; check the sbsigntool install");
    return out;
  });
}

void install_enrollment_keys(EspAccess& esp, const SecureBootEnroll& e) {
  with_context("secure_boot.enroll", [&] {
    const std::string dir = std::string("/loader/keys/") + (e.mode == "force" ? "auto" : "osup");
    esp.mkdirs(dir);
    for (const char* var : {"PK", "KEK", "db"})
      esp.copy_in(e.keys + "/" + var + ".auth", dir + "/" + var + ".auth");
    esp.write_atomic(kLoaderConf, loader_conf(true) + "secure-boot-enroll " + e.mode + "\n");
  });
}

}  // namespace osup::build
