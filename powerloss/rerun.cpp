#include "powerloss/rerun.h"

#include <fcntl.h>

#include <algorithm>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "format/sha256.h"
#include "powerloss/esp_check.h"
#include "updater/disk.h"
#include "updater/verify.h"

namespace osup::powerloss {

namespace {

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// SHA-256 of the ESP's bytes in a disk image.
std::string esp_sha256(const std::string& image) {
  const OsupDisk disk = discover_disk(DiscoverOptions{image, std::nullopt, "/proc/cmdline"});
  const UniqueFd fd = open_file(image, O_RDONLY | O_CLOEXEC);
  Sha256 h;
  std::vector<std::byte> buf(1 << 20);
  for (uint64_t at = 0; at < disk.esp.size; at += buf.size()) {
    const size_t n = pread_full(
        fd.get(), std::span(buf).first(std::min<uint64_t>(buf.size(), disk.esp.size - at)),
        disk.esp.start + at, image);
    h.update(std::span(buf).first(n));
  }
  return to_hex(h.finish());
}

}  // namespace

std::optional<Rerun> rerun_for_phase(const std::string& phase, const std::string& bundle,
                                     const std::string& delta) {
  using layout::Slot;
  if (phase == "switch" && !bundle.empty())
    return Rerun{"switch", Slot::a, {"--progress", "none", "switch", bundle}, Slot::b};
  if (phase == "switch-delta" && !delta.empty())
    return Rerun{"switch", Slot::a, {"--progress", "none", "switch", delta}, Slot::b};
  if (phase == "boot-b") return Rerun{"mark-good", Slot::b, {"mark-good"}, Slot::b};
  if (phase == "boot-a") return Rerun{"mark-good", Slot::a, {"mark-good"}, Slot::a};
  if (phase == "rollback") return Rerun{"rollback", Slot::b, {"rollback"}, Slot::a};
  return std::nullopt;
}

std::string rerun_error(const std::string& image, const Rerun& r, const std::string& osup_exe,
                        const std::string& keys_dir, const sig::TrustStore& trust,
                        const std::map<std::string, std::string>& loader_files, bool damaged_esp,
                        bool* refused) {
  std::vector<std::string> argv{osup_exe,
                                "--disk",
                                image,
                                "--keys",
                                keys_dir,
                                "--booted",
                                std::string(1, layout::slot_char(r.booted))};
  argv.insert(argv.end(), r.args.begin(), r.args.end());
  const std::string esp_before = damaged_esp ? esp_sha256(image) : "";
  const RunResult run_result = run(argv);
  const std::string what =
      std::string(damaged_esp ? "unrepaired-ESP " : "") + "rerun of osup " + r.name;
  if (damaged_esp && run_result.exit_code != 0 &&
      run_result.err.find(" is inconsistent (") != std::string::npos) {
    if (refused) *refused = true;
    return esp_sha256(image) == esp_before ? "" : what + " refused but changed the ESP";
  }
  if (run_result.exit_code != 0)
    return what + " failed (exit " + std::to_string(run_result.exit_code) +
           "): " + last_line(run_result.err);
  try {
    const OsupDisk disk = discover_disk(DiscoverOptions{image, std::nullopt, "/proc/cmdline"});
    const EspVerdict v = examine_esp(disk, trust, loader_files);
    if (!v.failures.empty()) return what + " left the ESP failing: " + v.failures.front();
    if (v.bootable.empty() || v.bootable.front().slot != r.boots)
      return what + " left the loader picking " + (v.picked ? *v.picked : "nothing") +
             ", not slot " + layout::slot_char(r.boots);
    if (auto e = v.slot_errors.find(r.boots); e != v.slot_errors.end())
      return what + " left slot " + layout::slot_char(r.boots) + " unbootable: " + e->second;
    read_back(disk, r.boots, v.manifests.at(r.boots), nullptr);
  } catch (const Error& e) {
    return what + " left a disk that does not verify: " + e.what();
  }
  return "";
}

}  // namespace osup::powerloss
