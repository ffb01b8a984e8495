#include "builder/inspect.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>

#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "boot/boot_control.h"
#include "boot/esp_access.h"
#include "boot/slot_boot.h"
#include "format/bundle_reader.h"
#include "format/gpt.h"
#include "format/manifest.h"
#include "format/signature.h"

using nlohmann::json;

namespace osup::build {
namespace {

enum class Kind { bundle, disk };

Kind detect_kind(const std::string& file) {
  UniqueFd fd = open_file(file, O_RDONLY);
  std::array<std::byte, 1024> head{};
  size_t n = read_full(fd.get(), head, file);
  const char* p = reinterpret_cast<const char*>(head.data());
  if (n >= 520 && std::memcmp(p + 512, "EFI PART", 8) == 0) return Kind::disk;
  if (n >= 263 && std::memcmp(p + 257, "ustar", 5) == 0) return Kind::bundle;
  fail(file + " is neither an osup bundle nor a GPT disk image");
}

json manifest_summary(const Manifest& m) {
  json payloads = json::array();
  for (const Payload& p : m.payloads)
    payloads.push_back({{"name", to_string(p.kind)},
                        {"file", p.file},
                        {"size", p.size},
                        {"sha256", p.sha256},
                        {"compression", to_string(p.compression)}});
  return {{"name", m.name},
          {"version", m.version},
          {"arch", m.arch},
          {"compatible", m.compatible},
          {"filesystem", m.filesystem},
          {"created", m.created},
          {"kernel_version", m.boot.kernel_version},
          {"cmdline", m.boot.cmdline},
          {"tries", m.boot.tries},
          {"verity_root_hash", m.verity.root_hash},
          {"payloads", payloads}};
}

// "valid", "untrusted" (the word `osup info` uses too: it does not verify with the key),
// or "not checked" without --pubkey.
json signature_status(const std::string& manifest, const std::string& signature,
                      const InspectOptions& opts) {
  if (!opts.pubkey) return {{"status", "not checked"}, {"hint", "pass --pubkey to check it"}};
  sig::PublicKey key = sig::PublicKey::load(*opts.pubkey);
  bool ok = key.verify(manifest, signature);
  return {{"status", ok ? "valid" : "untrusted"}, {"key_id", key.key_id()}};
}

// The size of each tar entry as stored in the bundle (compressed, for a .zst payload).
std::map<std::string, uint64_t> stored_sizes(const std::string& file) {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 64 << 10) != ARCHIVE_OK)
    fail("reading " + file + ": " + archive_error_string(a.get()));
  std::map<std::string, uint64_t> sizes;
  archive_entry* e = nullptr;
  while (archive_read_next_header(a.get(), &e) == ARCHIVE_OK) {
    if (const char* name = archive_entry_pathname(e))
      sizes[name] = static_cast<uint64_t>(archive_entry_size(e));
    archive_read_data_skip(a.get());
  }
  return sizes;
}

json inspect_bundle(const std::string& file, const InspectOptions& opts) {
  const std::unique_ptr<ByteSource> source = open_file_source(file);
  BundleReader reader(*source);
  reader.read_header();
  Manifest m = reader.parse_unverified();
  json j = {{"type", "bundle"}, {"file", file}, {"manifest", manifest_summary(m)}};
  const std::map<std::string, uint64_t> stored = stored_sizes(file);
  for (json& p : j["manifest"]["payloads"])
    if (auto it = stored.find(p["file"].get<std::string>()); it != stored.end())
      p["stored_size"] = it->second;
  j["signature"] = signature_status(reader.manifest_bytes(), reader.signature(), opts);
  if (j["signature"]["status"] == "valid") {
    // A valid signature vouches only for the manifest; hash every payload against it too.
    sig::TrustStore trust;
    trust.add(sig::PublicKey::load(*opts.pubkey));
    reader.verify(trust);
    std::vector<std::byte> buf(1 << 20);
    while (reader.next_payload())
      while (reader.read(buf) > 0) {
      }
    j["payloads_verified"] = true;
  }
  return j;
}

json inspect_disk(const std::string& file, const InspectOptions& opts) {
  gpt::Table t = gpt::read(file);
  json parts = json::array();
  for (const gpt::Partition& p : t.partitions)
    parts.push_back({{"number", p.number},
                     {"label", p.label},
                     {"type", p.type.str()},
                     {"uuid", p.uuid.str()},
                     {"start", p.start},
                     {"size", p.size}});
  json j = {{"type", "disk"},
            {"file", file},
            {"disk_uuid", t.disk_uuid.str()},
            {"size", t.disk_size},
            {"partitions", parts}};
  const gpt::Partition* esp_part = t.find(layout::kEspLabel);
  if (!esp_part) return j;
  std::shared_ptr<EspAccess> esp = open_image_esp(file, esp_part->start);
  auto boot = make_boot_control("auto", esp);
  json slots = json::object();
  for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) {
    SlotEspPaths paths = slot_esp_paths(s);
    SlotBoot b = boot->slot(s);
    json sj = {
        {"state", to_string(b.state)}, {"tries_left", b.tries_left}, {"generation", b.generation}};
    auto manifest = esp->read(paths.manifest);
    auto signature = esp->read(paths.signature);
    if (manifest) {
      Manifest m = Manifest::parse(*manifest);
      sj["manifest"] = manifest_summary(m);
      sj["signature"] = signature_status(*manifest, signature.value_or(""), opts);
    }
    slots[layout::slot_name(s)] = sj;
  }
  j["slots"] = slots;
  j["boot_loader"] = boot->name();
  if (auto next = boot->next_boot()) j["next_boot"] = layout::slot_name(*next);
  return j;
}

void print_manifest(FILE* out, const json& m, const std::string& indent) {
  std::fprintf(out, "%s%s %s (%s), compatible %s, %s\n", indent.c_str(),
               m["name"].get<std::string>().c_str(), m["version"].get<std::string>().c_str(),
               m["arch"].get<std::string>().c_str(), m["compatible"].get<std::string>().c_str(),
               m["filesystem"].get<std::string>().c_str());
  std::fprintf(out, "%sverity root hash %s\n", indent.c_str(),
               m["verity_root_hash"].get<std::string>().c_str());
  std::string kv = m["kernel_version"];
  std::fprintf(out, "%skernel %s\n", indent.c_str(),
               kv.empty() ? "(none: not bootable)" : kv.c_str());
  for (const auto& p : m["payloads"]) {
    // A compressed payload: its size in the bundle (next to its .zst name), then unpacked.
    const bool packed = p["compression"] != "none" && p.contains("stored_size");
    const uint64_t size = packed ? p["stored_size"].get<uint64_t>() : p["size"].get<uint64_t>();
    const std::string unpacked = packed ? "  (" + p["compression"].get<std::string>() + "; " +
                                              format_size(p["size"].get<uint64_t>()) + " unpacked)"
                                        : "";
    std::fprintf(out, "%s  %-7s %-20s %10s  sha256 %s%s\n", indent.c_str(),
                 p["name"].get<std::string>().c_str(), p["file"].get<std::string>().c_str(),
                 format_size(size).c_str(), p["sha256"].get<std::string>().substr(0, 16).c_str(),
                 unpacked.c_str());
  }
}

void print_text(FILE* out, const json& j) {
  std::fprintf(out, "%s: %s\n", j["file"].get<std::string>().c_str(),
               j["type"].get<std::string>() == "bundle" ? "osup bundle" : "GPT disk image");
  if (j["type"] == "bundle") {
    print_manifest(out, j["manifest"], "  ");
    std::fprintf(out, "  signature: %s\n", j["signature"]["status"].get<std::string>().c_str());
    if (j.contains("payloads_verified")) std::fprintf(out, "  payloads: all hashes match\n");
    return;
  }
  std::fprintf(out, "  disk %s, %s\n", j["disk_uuid"].get<std::string>().c_str(),
               format_size(j["size"].get<uint64_t>()).c_str());
  for (const auto& p : j["partitions"])
    std::fprintf(out, "  %d %-14s %10s  uuid %s\n", p["number"].get<int>(),
                 p["label"].get<std::string>().c_str(),
                 format_size(p["size"].get<uint64_t>()).c_str(),
                 p["uuid"].get<std::string>().c_str());
  if (!j.contains("slots")) return;
  for (const auto& [name, s] : j["slots"].items()) {
    std::fprintf(out, "  slot %s: %s\n", name.c_str(), s["state"].get<std::string>().c_str());
    if (s.contains("manifest")) {
      print_manifest(out, s["manifest"], "    ");
      std::fprintf(out, "    signature: %s\n", s["signature"]["status"].get<std::string>().c_str());
    }
  }
  if (j.contains("next_boot"))
    std::fprintf(out, "  next boot: slot %s (%s)\n", j["next_boot"].get<std::string>().c_str(),
                 j["boot_loader"].get<std::string>().c_str());
}

}  // namespace

json inspect_json(const std::string& file, const InspectOptions& opts) {
  return with_context("inspecting " + file, [&] {
    return detect_kind(file) == Kind::disk ? inspect_disk(file, opts) : inspect_bundle(file, opts);
  });
}

void inspect(const std::string& file, const InspectOptions& opts, FILE* out) {
  json j = inspect_json(file, opts);
  if (opts.json)
    std::fprintf(out, "%s\n", j.dump(2).c_str());
  else
    print_text(out, j);
  std::fflush(out);
  // What was asked for is shown; a signature that does not verify still fails the command.
  std::vector<std::string> untrusted;
  if (j.contains("signature") && j["signature"]["status"] == "untrusted") untrusted.push_back(file);
  if (j.contains("slots"))
    for (const auto& [name, s] : j["slots"].items())
      if (s.contains("signature") && s["signature"]["status"] == "untrusted")
        untrusted.push_back("slot " + name + " of " + file);
  if (!untrusted.empty())
    fail("signature of " + untrusted.front() + " is untrusted: it does not verify with " +
         *opts.pubkey + "; check that this is the key it was signed with");
}

}  // namespace osup::build
