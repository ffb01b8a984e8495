#include "format/manifest.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "base/arch.h"
#include "base/error.h"
#include "format/json_fields.h"
#include "format/uuid.h"

namespace osup {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxPayloadSize = uint64_t{1} << 40;  // 1 TiB: far above any OS image
// Each kind with its JSON name, in bundle order.
constexpr std::pair<PayloadKind, std::string_view> kPayloadNames[] = {
    {PayloadKind::kernel, "kernel"}, {PayloadKind::initrd, "initrd"}, {PayloadKind::uki_a, "uki-a"},
    {PayloadKind::uki_b, "uki-b"},   {PayloadKind::verity, "verity"}, {PayloadKind::root, "root"}};

[[noreturn]] void field_error(const std::string& field, const std::string& rule) {
  json_field_error("manifest", field, rule);
}

void check_sha256_hex(const std::string& field, const std::string& v) {
  osup::check_sha256_hex("manifest", field, v);
}

// The manifest's reader of one JSON object (format/json_fields.h).
class Fields : public JsonFields {
 public:
  Fields(const json& j, std::string prefix) : JsonFields(j, "manifest", std::move(prefix)) {}
};

bool power_of_two_block(uint32_t v) { return v >= 512 && v <= 65536 && (v & (v - 1)) == 0; }

void validate_payload(const Payload& p, size_t i) {
  const std::string f = "payloads[" + std::to_string(i) + "]";
  // A plain name: the reader matches entries by it and the updater never makes paths of it,
  // but keep it harmless for anyone extracting the tar by hand (no '/', no '..').
  if (p.file.empty() || p.file.size() > 100 || !all_of_chars(p.file, "._+-") ||
      p.file.find("..") != std::string::npos || p.file == "manifest.json" ||
      p.file == "manifest.json.sig")
    field_error(f + ".file",
                "must be a plain file name (letters, digits, . _ + -; no '/' or '..')");
  if (p.size > kMaxPayloadSize) field_error(f + ".size", "is larger than 1 TiB");
  if (p.size == 0 && p.kind != PayloadKind::initrd) field_error(f + ".size", "must not be 0");
  check_sha256_hex(f + ".sha256", p.sha256);
}

// dpkg's ordering of non-digit characters: '~' before the end, letters before the rest.
int char_order(int c) {
  if (c == '~') return -1;
  if (c == 0) return 0;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return c;
  return c + 256;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

void Manifest::validate() const {
  check_format("manifest", format, kFormat);
  if (name.empty() || name.size() > 64 || !all_of_chars(name, "._-"))
    field_error("name", "must be 1-64 characters of letters, digits, . _ -");
  if (version.empty() || version.size() > 64 || !all_of_chars(version, ".+~_-"))
    field_error("version", "must be 1-64 characters of letters, digits, . + ~ _ -");
  if (arch != "x86_64" && arch != "aarch64") {
    try {
      (void)parse_arch(arch, "manifest field 'arch'");
    } catch (const Error&) {
      field_error("arch", "must be x86_64 or aarch64");
    }
    field_error("arch", "must be x86_64 or aarch64 (got alias '" + arch + "')");
  }
  if (compatible.empty() || compatible.size() > 128 || !all_of_chars(compatible, "._+-:,@"))
    field_error("compatible", "must be 1-128 characters of letters, digits, . _ + - : , @");
  if (filesystem != "erofs" && filesystem != "squashfs" && filesystem != "ext4")
    field_error("filesystem", "must be erofs, squashfs or ext4");

  check_sha256_hex("verity.root_hash", verity.root_hash);
  if (verity.salt.size() > 512 || verity.salt.size() % 2 || !is_lower_hex(verity.salt))
    field_error("verity.salt", "must be a hex string of at most 256 bytes");
  try {
    if (Uuid::parse(verity.uuid).str() != verity.uuid) throw Error("not canonical");
  } catch (const Error&) {
    field_error("verity.uuid", "must be a lowercase UUID (8-4-4-4-12)");
  }
  if (!power_of_two_block(verity.data_block_size))
    field_error("verity.data_block_size", "must be a power of two from 512 to 65536");
  if (!power_of_two_block(verity.hash_block_size))
    field_error("verity.hash_block_size", "must be a power of two from 512 to 65536");
  if (verity.data_size == 0 || verity.data_size % verity.data_block_size ||
      verity.data_size > kMaxPayloadSize)
    field_error("verity.data_size", "must be a non-zero multiple of verity.data_block_size");
  if (verity.hash_size == 0 || verity.hash_size > kMaxPayloadSize)
    field_error("verity.hash_size", "must be non-zero and at most 1 TiB");
  if (verity.algorithm != "sha256") field_error("verity.algorithm", "must be \"sha256\"");

  // The command line goes into boot loader entries line by line: no control characters.
  if (boot.cmdline.size() > 4096 || !std::all_of(boot.cmdline.begin(), boot.cmdline.end(),
                                                 [](char c) { return c >= 0x20 && c < 0x7f; }))
    field_error("boot.cmdline", "must be at most 4096 printable ASCII characters");
  if (boot.tries < 1 || boot.tries > 99) field_error("boot.tries", "must be from 1 to 99");
  if (boot.kernel_version.size() > 128 || !all_of_chars(boot.kernel_version, ".+~_-"))
    field_error("boot.kernel_version",
                "must be at most 128 characters of letters, digits, . + ~ _ -");

  std::set<PayloadKind> kinds;
  std::set<std::string> files;
  for (size_t i = 0; i < payloads.size(); ++i) {
    const Payload& p = payloads[i];
    validate_payload(p, i);
    if (!kinds.insert(p.kind).second)
      field_error("payloads[" + std::to_string(i) + "].name",
                  "repeats payload '" + to_string(p.kind) + "'");
    if (!files.insert(p.file).second)
      field_error("payloads[" + std::to_string(i) + "].file", "repeats file '" + p.file + "'");
  }
  if (!kinds.count(PayloadKind::root)) fail("manifest: payload 'root' is missing");
  if (!kinds.count(PayloadKind::verity)) fail("manifest: payload 'verity' is missing");
  if (boot.kernel_version.empty() == (kinds.count(PayloadKind::kernel) > 0))
    fail(boot.kernel_version.empty()
             ? "manifest: payload 'kernel' needs field 'boot.kernel_version'"
             : "manifest: field 'boot.kernel_version' is set but payload 'kernel' is missing");
  if (kinds.count(PayloadKind::initrd) && !kinds.count(PayloadKind::kernel))
    fail("manifest: payload 'initrd' needs payload 'kernel'");
  // A UKI is built from the kernel, and a Secure Boot slot can only be installed into
  // either slot when the bundle has both.
  if (kinds.count(PayloadKind::uki_a) != kinds.count(PayloadKind::uki_b))
    fail("manifest: payloads 'uki-a' and 'uki-b' come together (one signed UKI per slot)");
  if (kinds.count(PayloadKind::uki_a) && !kinds.count(PayloadKind::kernel))
    fail("manifest: payloads 'uki-a' and 'uki-b' need payload 'kernel'");
}

std::string Manifest::to_json() const {
  validate();
  json j;  // std::map-backed: keys come out sorted, hence deterministic
  j["format"] = format;
  j["name"] = name;
  j["version"] = version;
  j["arch"] = arch;
  j["compatible"] = compatible;
  j["filesystem"] = filesystem;
  j["created"] = created;
  j["verity"] = {{"root_hash", verity.root_hash},
                 {"salt", verity.salt},
                 {"uuid", verity.uuid},
                 {"data_size", verity.data_size},
                 {"hash_size", verity.hash_size},
                 {"data_block_size", verity.data_block_size},
                 {"hash_block_size", verity.hash_block_size},
                 {"algorithm", verity.algorithm}};
  j["boot"] = {
      {"cmdline", boot.cmdline}, {"tries", boot.tries}, {"kernel_version", boot.kernel_version}};
  j["payloads"] = json::array();
  for (const Payload& p : payloads)
    j["payloads"].push_back({{"name", to_string(p.kind)},
                             {"file", p.file},
                             {"compression", to_string(p.compression)},
                             {"size", p.size},
                             {"sha256", p.sha256}});
  return j.dump(2) + "\n";
}

Manifest Manifest::parse(std::string_view text) {
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    std::string why = e.what();
    // nlohmann's messages start with "[json.exception.parse_error.101] "; keep the rest.
    if (auto pos = why.find("] "); pos != std::string::npos) why = why.substr(pos + 2);
    fail("manifest is not valid JSON: " + why);
  }
  Fields top(j, "");
  Manifest m;
  // Format first: a newer manifest may have other fields; say "update osup", not "unknown field".
  {
    const json& f = top.get("format");
    if (!f.is_number_integer()) field_error("format", "must be an integer");
    if (f.is_number_unsigned() && f.get<uint64_t>() > static_cast<uint64_t>(kFormat))
      check_format("manifest",
                   static_cast<int64_t>(std::min<uint64_t>(f.get<uint64_t>(), INT64_MAX)), kFormat);
    m.format = static_cast<int>(f.get<int64_t>());
    check_format("manifest", m.format, kFormat);
  }
  m.name = top.str("name");
  m.version = top.str("version");
  m.arch = top.str("arch");
  m.compatible = top.str("compatible");
  m.filesystem = top.str("filesystem");
  m.created = top.u64("created");

  Fields v(top.get("verity"), "verity");
  m.verity.root_hash = v.str("root_hash");
  m.verity.salt = v.str("salt");
  m.verity.uuid = v.str("uuid");
  m.verity.data_size = v.u64("data_size");
  m.verity.hash_size = v.u64("hash_size");
  m.verity.data_block_size = v.u32("data_block_size");
  m.verity.hash_block_size = v.u32("hash_block_size");
  m.verity.algorithm = v.str("algorithm");
  v.done();

  Fields b(top.get("boot"), "boot");
  m.boot.cmdline = b.str("cmdline");
  m.boot.tries = b.small_int("tries");
  m.boot.kernel_version = b.str("kernel_version");
  b.done();

  const json& ps = top.get("payloads");
  if (!ps.is_array()) field_error("payloads", "must be an array");
  if (ps.size() > std::size(kPayloadNames))
    field_error("payloads", "has more entries than there are payload kinds");
  for (size_t i = 0; i < ps.size(); ++i) {
    Fields p(ps[i], "payloads[" + std::to_string(i) + "]");
    const std::string f = "payloads[" + std::to_string(i) + "]";
    Payload pl;
    const std::string name = p.str("name");
    const auto kind = parse_payload_kind(name);
    if (!kind)
      field_error(f + ".name", "must be one of kernel, initrd, uki-a, uki-b, verity, root (got '" +
                                   (name.size() <= 32 && all_of_chars(name, "._-") ? name : "...") +
                                   "')");
    pl.kind = *kind;
    pl.file = p.str("file");
    const auto compression = parse_compression(p.str("compression"));
    if (!compression) field_error(f + ".compression", "must be \"zstd\" or \"none\"");
    pl.compression = *compression;
    pl.size = p.u64("size");
    pl.sha256 = p.str("sha256");
    p.done();
    m.payloads.push_back(std::move(pl));
  }
  top.done();
  m.validate();
  return m;
}

const Payload* Manifest::find(PayloadKind kind) const {
  for (const Payload& p : payloads)
    if (p.kind == kind) return &p;
  return nullptr;
}

std::string to_string(PayloadKind k) {
  for (const auto& [kind, name] : kPayloadNames)
    if (kind == k) return std::string(name);
  return "?";
}

std::string to_string(Compression c) { return c == Compression::zstd ? "zstd" : "none"; }

std::optional<PayloadKind> parse_payload_kind(std::string_view name) {
  for (const auto& [kind, n] : kPayloadNames)
    if (n == name) return kind;
  return std::nullopt;
}

std::optional<Compression> parse_compression(std::string_view name) {
  if (name == "none") return Compression::none;
  if (name == "zstd") return Compression::zstd;
  return std::nullopt;
}

int compare_versions(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    // Non-digit run, character by character in dpkg order (end of run counts as 0).
    while ((i < a.size() && !is_digit(a[i])) || (j < b.size() && !is_digit(b[j]))) {
      int ca = i < a.size() && !is_digit(a[i]) ? char_order(static_cast<unsigned char>(a[i])) : 0;
      int cb = j < b.size() && !is_digit(b[j]) ? char_order(static_cast<unsigned char>(b[j])) : 0;
      if (ca != cb) return ca < cb ? -1 : 1;
      if (i < a.size() && !is_digit(a[i])) ++i;
      if (j < b.size() && !is_digit(b[j])) ++j;
    }
    // Digit run, numerically without overflow: skip leading zeros, then longer is larger.
    while (i < a.size() && a[i] == '0') ++i;
    while (j < b.size() && b[j] == '0') ++j;
    size_t si = i, sj = j;
    while (i < a.size() && is_digit(a[i])) ++i;
    while (j < b.size() && is_digit(b[j])) ++j;
    std::string_view da = a.substr(si, i - si), db = b.substr(sj, j - sj);
    if (da.size() != db.size()) return da.size() < db.size() ? -1 : 1;
    if (int c = da.compare(db); c != 0) return c < 0 ? -1 : 1;
  }
  return 0;
}

}  // namespace osup
