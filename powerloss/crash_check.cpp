#include "powerloss/crash_check.h"

#include <filesystem>

#include "base/error.h"
#include "base/process.h"
#include "boot/esp_access.h"
#include "powerloss/esp_check.h"
#include "updater/verify.h"

namespace osup::powerloss {

namespace {

// The regions a check may need, each in the working file the tools want: a sparse copy
// of the whole disk (GPT, slots: osup's verify code reads them at their offsets), the ESP
// alone (mtools, fsck.vfat) and the data partition alone (e2fsck).
std::vector<Region> regions_of(const OsupDisk& d, uint64_t disk_bytes, const std::string& work) {
  const uint64_t ss = 512, sectors = disk_bytes / ss;
  const std::string disk = work + "/disk.img";
  std::vector<Region> r{
      {"gpt-head", 0, d.esp.start / ss, disk, 0},
      {"gpt-tail", sectors - 33, 33, disk, sectors - 33},
      {"esp", d.esp.start / ss, d.esp.size / ss, work + "/esp.img", 0},
      {"data", d.data.start / ss, sectors - 33 - d.data.start / ss, work + "/data.img", 0}};
  for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) {
    for (const gpt::Partition* p : {&d.slot(s).root, &d.slot(s).verity})
      r.push_back({p->label, p->start / ss, p->size / ss, disk, p->start / ss});
  }
  return r;
}

// What e2fsck said, without its banner, on one line (it names the broken structure).
std::string first_lines(const std::string& text) {
  std::string out;
  size_t pos = 0;
  for (int n = 0; pos < text.size() && n < 3;) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line.starts_with("e2fsck 1.")) continue;
    out += (out.empty() ? "" : " / ") + line;
    ++n;
  }
  return out;
}

std::string slot_text(layout::Slot s) { return std::string("slot ") + layout::slot_char(s); }

}  // namespace

CrashChecker::CrashChecker(const std::string& base_image, const WriteLog& log,
                           sig::TrustStore trust, const std::string& work_dir)
    : work_(work_dir), trust_(std::move(trust)) {
  std::filesystem::create_directories(work_);
  osup_ = discover_disk(DiscoverOptions{base_image, std::nullopt, "/proc/cmdline"});
  base_table_ = osup_.table;
  base_loader_files_ = loader_files(*osup_.esp_files);
  const uint64_t bytes = std::filesystem::file_size(base_image);
  disk_ = std::make_unique<CrashDisk>(base_image, log, regions_of(osup_, bytes, work_));
  osup_.path = work_ + "/disk.img";
  osup_.esp_files = open_image_esp(work_ + "/esp.img", 0);
}

CrashChecker::~CrashChecker() = default;

RegionKey CrashChecker::combined_key(std::initializer_list<const char*> names) const {
  RegionKey k{0, 0};
  uint64_t salt = 1;
  for (const char* n : names) {
    const RegionKey r = disk_->key(disk_->find(n));
    k[0] = k[0] * 0x100000001b3ull + r[0] + salt;
    k[1] = k[1] * 0x9e3779b97f4a7c15ull + r[1] + salt;
    ++salt;
  }
  return k;
}

// The GPT as the state holds it; every partition must still carry the base's place.
std::string CrashChecker::gpt_error() {
  const RegionKey k = combined_key({"gpt-head", "gpt-tail"});
  auto it = gpt_cache_.find(k);
  if (it == gpt_cache_.end()) {
    ++counts_.gpt;
    disk_->materialize(disk_->find("gpt-head"));
    disk_->materialize(disk_->find("gpt-tail"));
    std::pair<std::string, gpt::Table> result;
    try {
      result.second = gpt::read(osup_.path);
      for (const gpt::Partition& p : base_table_.partitions) {
        const gpt::Partition* now = result.second.find(p.label);
        if (!now || now->start != p.start) result.first = "GPT lost partition " + p.label;
      }
    } catch (const Error& e) {
      result.first = std::string("GPT: ") + e.what();
    }
    it = gpt_cache_.emplace(k, std::move(result)).first;
  }
  osup_.table = it->second.second;
  return it->second.first;
}

const EspVerdict& CrashChecker::esp_verdict() {
  const RegionKey k = disk_->key(disk_->find("esp"));
  auto it = esp_cache_.find(k);
  if (it != esp_cache_.end()) return it->second;
  ++counts_.esp;
  disk_->materialize(disk_->find("esp"));
  EspVerdict v = examine_esp(osup_, trust_, base_loader_files_);
  v.damage = fsck_vfat_error(work_ + "/esp.img");
  if (!v.damage.empty()) judge_repair(v);
  return esp_cache_.emplace(k, std::move(v)).first->second;
}

// FAT has no journal: a cut mid-write can leave lost clusters, a free cluster in a
// chain, FATs that differ. That is acceptable when `fsck.vfat -a` (what a boot with
// fsck of the ESP does) repairs it without changing what boots: the same pick, every
// bootable slot still whole, the loader's files intact.
void CrashChecker::judge_repair(EspVerdict& v) {
  ++counts_.esp_repaired;
  const std::string copy = work_ + "/esp-repair.img";
  run_checked({"cp", "--sparse=always", work_ + "/esp.img", copy});
  // Two passes, as two boots with fsck would: dosfstools 4.2 deletes a directory whose
  // start cluster a cut left at 0 in one pass and fixes what that frees in the next.
  std::string still = v.damage;
  for (int pass = 0; pass < 2 && !still.empty(); ++pass) {
    (void)run({"fsck.vfat", "-a", copy});
    still = fsck_vfat_error(copy);
  }
  OsupDisk repaired = osup_;
  repaired.esp_files = open_image_esp(copy, 0);
  const EspVerdict r = examine_esp(repaired, trust_, base_loader_files_);
  if (!still.empty()) {
    v.failures.push_back("fsck.vfat -a leaves the ESP damaged: " + still);
  } else if (r.picked != v.picked || r.failures != v.failures || r.slot_errors != v.slot_errors) {
    v.failures.push_back("repairing the ESP (" + v.damage +
                         ") changes what boots: " + (r.picked ? *r.picked : "nothing") +
                         " instead of " + (v.picked ? *v.picked : "nothing") +
                         (r.failures.empty() ? "" : "; " + r.failures.front()));
  }
  std::filesystem::remove(copy);
}

// The slot's partitions: UUIDs as its command line names them, root against its tree.
std::string CrashChecker::slot_error(layout::Slot s, const Manifest& m) {
  const Digest d = digest_from_hex(m.verity.root_hash, "manifest verity.root_hash");
  const gpt::Partition* root = osup_.table.find(layout::root_label(s));
  const gpt::Partition* verity = osup_.table.find(layout::verity_label(s));
  if (!root || !verity || root->uuid != layout::root_partition_uuid(d) ||
      verity->uuid != layout::verity_partition_uuid(d))
    return "its partition UUIDs are not the ones its entry names";
  const std::string root_name = layout::root_label(s), verity_name = layout::verity_label(s);
  const RegionKey k = combined_key({root_name.c_str(), verity_name.c_str()});
  auto it = root_cache_.find({k, m.verity.root_hash});
  if (it != root_cache_.end()) return it->second;
  ++counts_.roots;
  disk_->materialize(disk_->find(root_name));
  disk_->materialize(disk_->find(verity_name));
  std::string err;
  try {
    read_back(osup_, s, m, nullptr);
  } catch (const Error& e) {
    err = std::string("root: ") + e.what();
  }
  return root_cache_.emplace(std::make_pair(k, m.verity.root_hash), err).first->second;
}

// e2fsck -fn after the journal replay the kernel would do on mount (on a scratch copy:
// the replay writes).
std::string CrashChecker::data_error() {
  const RegionKey k = disk_->key(disk_->find("data"));
  auto it = data_cache_.find(k);
  if (it != data_cache_.end()) return it->second;
  ++counts_.data;
  const size_t r = disk_->find("data");
  disk_->materialize(r);
  const std::string image = disk_->region(r).file, scratch = work_ + "/data-scratch.img";
  std::string err;
  RunResult check = run({"e2fsck", "-fn", image});
  if (check.exit_code != 0) {
    run_checked({"cp", "--sparse=always", image, scratch});
    RunResult replay = run({"e2fsck", "-E", "journal_only", "-y", scratch});
    check = run({"e2fsck", "-fn", scratch});
    if (replay.exit_code > 1 || check.exit_code != 0)
      err = "e2fsck -fn of data (after journal replay): exit " + std::to_string(check.exit_code) +
            ": " + first_lines(check.err + check.out);
    std::filesystem::remove(scratch);
  }
  return data_cache_.emplace(k, err).first->second;
}

void CrashChecker::write_disk_image(const std::string& path, bool boot_fsck) {
  for (const char* name : {"gpt-head", "gpt-tail", "esp"}) disk_->materialize(disk_->find(name));
  for (layout::Slot s : {layout::Slot::a, layout::Slot::b})
    for (const std::string& label : {layout::root_label(s), layout::verity_label(s)})
      disk_->materialize(disk_->find(label));
  run_checked({"cp", "--sparse=always", osup_.path, path});
  const Region& esp = disk_->region(disk_->find("esp"));
  std::string esp_file = esp.file;
  if (boot_fsck && !esp_verdict().damage.empty()) {
    // What the boot before the operation does: systemd-fsck runs `fsck.vfat -a` on the ESP
    // before its (auto)mount; twice, as for the checker's repair (judge_repair).
    esp_file = work_ + "/esp-boot.img";
    run_checked({"cp", "--sparse=always", esp.file, esp_file});
    for (int pass = 0; pass < 2; ++pass) (void)run({"fsck.vfat", "-a", esp_file});
  }
  run_checked({"dd", "if=" + esp_file, "of=" + path, "bs=1M", "oflag=seek_bytes",
               "seek=" + std::to_string(esp.first * 512), "conv=notrunc,sparse", "status=none"});
  if (esp_file != esp.file) std::filesystem::remove(esp_file);
}

Verdict CrashChecker::check(const CrashState& s, bool with_data) {
  Verdict v;
  disk_->select(s);
  if (std::string e = gpt_error(); !e.empty()) v.failures.push_back(e);
  const EspVerdict& esp = esp_verdict();
  v.failures.insert(v.failures.end(), esp.failures.begin(), esp.failures.end());
  v.esp_repaired = !esp.damage.empty();
  if (esp.picked && !esp.bootable.empty() && esp.bootable.front().file == *esp.picked)
    v.boots = esp.bootable.front().slot;
  for (layout::Slot slot : {layout::Slot::a, layout::Slot::b}) {
    if (auto e = esp.slot_errors.find(slot); e != esp.slot_errors.end()) {
      v.failures.push_back(slot_text(slot) + " is bootable but " + e->second);
    } else if (auto m = esp.manifests.find(slot); m != esp.manifests.end()) {
      if (std::string e2 = slot_error(slot, m->second); !e2.empty())
        v.failures.push_back(slot_text(slot) + " is bootable but " + e2);
    }
  }
  if (with_data)
    if (std::string e = data_error(); !e.empty()) v.failures.push_back(e);
  return v;
}

}  // namespace osup::powerloss
