#include "updater/status.h"

#include <sys/statvfs.h>

#include <cstdio>

#include "base/error.h"
#include "base/ext4.h"
#include "base/size.h"
#include "updater/verify.h"

using nlohmann::json;

namespace osup {
namespace {

// Usage of the data partition: statfs when mounted, the ext4 superblock offline.
json data_usage(const OsupDisk& disk) {
  json j = {{"partition", disk.data.number}, {"size", disk.data.size}};
  if (!disk.data_mount.empty()) {
    struct statvfs st {};
    if (::statvfs(disk.data_mount.c_str(), &st) == 0) {
      j["mount"] = disk.data_mount;
      j["filesystem_size"] = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
      // Free blocks, root's reserve included, as the superblock counts them offline, so
      // "used" is df's Used whether the machine runs or not.
      j["free"] = static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
    }
    return j;
  }
  if (auto u = read_ext4_usage(disk.path, disk.data.start)) {  // unmounted, offline
    j["filesystem_size"] = u->size;
    j["free"] = u->free;
  }
  return j;
}

}  // namespace

json status_json(const OsupDisk& disk, const BootControl& boot) {
  json slots = json::object();
  for (layout::Slot slot : {layout::Slot::a, layout::Slot::b}) {
    SlotBoot b = boot.slot(slot);
    json j = {{"state", to_string(b.state)},
              {"tries_left", b.tries_left},
              {"tries_done", b.tries_done},
              {"generation", b.generation}};
    try {
      if (auto m = slot_manifest(disk, slot)) {
        j["name"] = m->name;
        j["version"] = m->version;
        j["compatible"] = m->compatible;
        j["root_hash"] = m->verity.root_hash;
      }
    } catch (const Error& e) {
      j["manifest_error"] = e.what();
    }
    slots[layout::slot_name(slot)] = j;
  }
  json j = {{"disk", disk.path},          {"offline", disk.offline}, {"arch", arch_name(disk.arch)},
            {"boot_loader", boot.name()}, {"slots", slots},          {"data", data_usage(disk)}};
  j["booted"] = disk.booted ? json(layout::slot_name(*disk.booted)) : json(nullptr);
  auto next = boot.next_boot();
  j["next_boot"] = next ? json(layout::slot_name(*next)) : json(nullptr);
  return j;
}

void print_status(const json& j) {
  std::printf("disk %s (%s, %s%s)\n", j["disk"].get<std::string>().c_str(),
              j["arch"].get<std::string>().c_str(), j["boot_loader"].get<std::string>().c_str(),
              j["offline"].get<bool>() ? ", offline" : "");
  for (const auto& [name, s] : j["slots"].items()) {
    std::string marks;
    if (j["booted"] == name) marks += " [booted]";
    if (j["next_boot"] == name) marks += " [next boot]";
    std::string version = s.contains("version")
                              ? s["name"].get<std::string>() + " " + s["version"].get<std::string>()
                              : "-";
    std::string state = s["state"];
    if (state == "trying")
      state += " (" + std::to_string(s["tries_left"].get<int>()) + " tries left)";
    std::printf("  slot %s: %-24s %s%s\n", name.c_str(), version.c_str(), state.c_str(),
                marks.c_str());
  }
  const json& d = j["data"];
  if (d.contains("filesystem_size")) {
    uint64_t size = d["filesystem_size"], free = d["free"];
    std::printf("  data: %s used of %s\n", format_size(size - free).c_str(),
                format_size(size).c_str());
  }
}

}  // namespace osup
