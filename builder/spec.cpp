#include "builder/spec.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "builder/image/disk.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace osup::build {
namespace {

[[noreturn]] void field_error(const std::string& field, const std::string& problem) {
  fail("field '" + field + "': " + problem);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Rejects keys outside `allowed`, so a typo ("filesytem") is an error, not a silent default.
void check_keys(const json& obj, const std::string& where,
                const std::vector<std::string>& allowed) {
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string field = where.empty() ? key : where + "." + key;
      field_error(field, "unknown field; known fields" +
                             (where.empty() ? "" : " of '" + where + "'") + " are " +
                             join(allowed));
    }
  }
}

const json* member(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string get_string(const json& obj, const std::string& key, const std::string& field,
                       std::optional<std::string> fallback) {
  const json* v = member(obj, key);
  if (!v) {
    if (!fallback) field_error(field, "missing (it is required)");
    return *fallback;
  }
  if (!v->is_string()) field_error(field, "expected a string, got " + v->dump());
  return v->get<std::string>();
}

const json& get_object(const json& obj, const std::string& key, const std::string& field) {
  static const json empty = json::object();
  const json* v = member(obj, key);
  if (!v) return empty;
  if (!v->is_object()) field_error(field, "expected an object, got " + v->dump());
  return *v;
}

std::vector<std::string> get_string_list(const json& obj, const std::string& key,
                                         const std::string& field,
                                         std::vector<std::string> fallback) {
  const json* v = member(obj, key);
  if (!v) return fallback;
  if (!v->is_array()) field_error(field, "expected a list of strings, got " + v->dump());
  std::vector<std::string> out;
  for (const auto& e : *v) {
    if (!e.is_string()) field_error(field, "expected a list of strings, got element " + e.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' ||
         c == '~' || c == '-';
}

void check_identifier(const std::string& value, const std::string& field, bool digit_first) {
  if (value.empty()) field_error(field, "must not be empty");
  if (value.size() > 128) field_error(field, "longer than 128 characters");
  for (char c : value)
    if (!is_name_char(c))
      field_error(field, "invalid character '" + std::string(1, c) + "' in '" + value +
                             "'; use only letters, digits and . _ + ~ -");
  if (digit_first && !std::isdigit(static_cast<unsigned char>(value[0])))
    field_error(field, "'" + value + "' must start with a digit (e.g. 1.0.0)");
}

fs::path resolve(const fs::path& spec_dir, const std::string& p) {
  fs::path path(p);
  return (path.is_absolute() ? path : spec_dir / path).lexically_normal();
}

// A source path the build reads: it has to exist now, so the error comes before any work.
fs::path existing_path(const fs::path& spec_dir, const std::string& value, const std::string& field,
                       bool want_dir) {
  if (value.empty()) field_error(field, "must not be empty");
  fs::path p = resolve(spec_dir, value);
  std::error_code ec;
  auto st = fs::status(p, ec);
  if (!fs::exists(st))
    field_error(field, "'" + value + "' does not exist (looked for " + p.string() + ")");
  if (want_dir && !fs::is_directory(st))
    field_error(field, "'" + value + "' is not a directory (" + p.string() + ")");
  if (!want_dir && !fs::is_regular_file(st))
    field_error(field, "'" + value + "' is not a regular file (" + p.string() + ")");
  return p;
}

uint64_t get_size(const json& obj, const std::string& key, const std::string& field,
                  uint64_t fallback) {
  const json* v = member(obj, key);
  if (!v) return fallback;
  uint64_t size = 0;
  if (v->is_number_unsigned())
    size = v->get<uint64_t>();
  else if (v->is_string())
    size = with_context("field '" + field + "'",
                        [&] { return parse_size(v->get<std::string>(), "size"); });
  else
    field_error(field, "expected a size like \"2G\" or a number of bytes, got " + v->dump());
  // Partitions start on 1 MiB boundaries; odd sizes would silently shrink or waste space.
  if (size % MiB != 0)
    field_error(field, std::to_string(size) + " bytes is not a multiple of 1M; use M or G units");
  return size;
}

DebootstrapSource parse_debootstrap(const json& j, const fs::path& spec_dir) {
  const std::string f = "rootfs.debootstrap";
  if (!j.is_object()) field_error(f, "expected an object, got " + j.dump());
  check_keys(j, f, {"suite", "variant", "mirror", "components", "packages", "cache"});
  DebootstrapSource d;
  d.suite = get_string(j, "suite", f + ".suite", d.suite);
  d.variant = get_string(j, "variant", f + ".variant", d.variant);
  d.mirror = get_string(j, "mirror", f + ".mirror", d.mirror);
  d.components = get_string_list(j, "components", f + ".components", d.components);
  d.packages = get_string_list(j, "packages", f + ".packages", {});
  if (d.suite.empty() || !std::all_of(d.suite.begin(), d.suite.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) ||
               std::isdigit(static_cast<unsigned char>(c)) || c == '-';
      }))
    field_error(f + ".suite", "invalid suite '" + d.suite + "'; use a Debian suite like bookworm");
  static const std::set<std::string> variants = {"", "minbase", "buildd", "fakechroot"};
  if (!variants.count(d.variant))
    field_error(f + ".variant",
                "unknown variant '" + d.variant + "'; use minbase, buildd, fakechroot or \"\"");
  if (!(d.mirror.starts_with("http://") || d.mirror.starts_with("https://") ||
        d.mirror.starts_with("file://")))
    field_error(f + ".mirror", "'" + d.mirror + "' is not an http://, https:// or file:// URL");
  if (d.components.empty()) field_error(f + ".components", "must list at least one component");
  auto debian_name = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::islower(static_cast<unsigned char>(c)) ||
             std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
    });
  };
  for (const auto& c : d.components)
    if (!debian_name(c)) field_error(f + ".components", "invalid component '" + c + "'");
  for (const auto& p : d.packages)
    if (!debian_name(p))
      field_error(f + ".packages", "invalid package name '" + p + "'; use Debian package names");
  if (const json* c = member(j, "cache")) {
    if (!c->is_string() || c->get<std::string>().empty())
      field_error(f + ".cache", "expected a directory path, got " + c->dump());
    d.cache = resolve(spec_dir, c->get<std::string>());
  }
  return d;
}

// Each parse_* fills the fields of one part of the spec, in the order the fields appear.

void parse_rootfs(const json& j, Spec& s) {
  const json* rootfs = member(j, "rootfs");
  if (!rootfs) field_error("rootfs", "missing; give one of tarball, directory, debootstrap");
  if (!rootfs->is_object() || rootfs->size() != 1)
    field_error("rootfs", "exactly one of tarball, directory, debootstrap");
  check_keys(*rootfs, "rootfs", {"tarball", "directory", "debootstrap"});
  if (member(*rootfs, "tarball"))
    s.rootfs = TarballSource{
        existing_path(s.spec_dir, get_string(*rootfs, "tarball", "rootfs.tarball", std::nullopt),
                      "rootfs.tarball", false)};
  else if (member(*rootfs, "directory"))
    s.rootfs = DirectorySource{existing_path(
        s.spec_dir, get_string(*rootfs, "directory", "rootfs.directory", std::nullopt),
        "rootfs.directory", true)};
  else
    s.rootfs = parse_debootstrap(rootfs->at("debootstrap"), s.spec_dir);

  if (member(j, "overlay"))
    s.overlay = existing_path(s.spec_dir, get_string(j, "overlay", "overlay", std::nullopt),
                              "overlay", true);
  for (const auto& h : get_string_list(j, "hooks", "hooks", {}))
    s.hooks.push_back(existing_path(s.spec_dir, h, "hooks", false));
}

void parse_filesystem(const json& j, Spec& s) {
  const json& fsj = get_object(j, "filesystem", "filesystem");
  check_keys(fsj, "filesystem", {"type", "compression"});
  s.fs_type = get_string(fsj, "type", "filesystem.type", "erofs");
  std::vector<std::string> algos;
  if (s.fs_type == "erofs")
    algos = {"lz4hc", "lz4", "none"};
  else if (s.fs_type == "squashfs")
    algos = {"zstd", "xz", "gzip", "lz4", "none"};
  else
    field_error("filesystem.type", "unknown type '" + s.fs_type + "'; use erofs or squashfs");
  s.compression = get_string(fsj, "compression", "filesystem.compression", algos.front());
  if (std::find(algos.begin(), algos.end(), s.compression) == algos.end())
    field_error("filesystem.compression", "'" + s.compression + "' is not supported for " +
                                              s.fs_type + "; use one of " + join(algos));
}

void parse_disk(const json& j, Spec& s) {
  const json& disk = get_object(j, "disk", "disk");
  check_keys(disk, "disk", {"size", "esp", "slot"});
  s.disk_size = get_size(disk, "size", "disk.size", s.disk_size);
  s.esp_size = get_size(disk, "esp", "disk.esp", s.esp_size);
  s.slot_size = get_size(disk, "slot", "disk.slot", s.slot_size);
  // FAT32 needs 65525 clusters (> 32 MiB), and the ESP holds a kernel and initrd per slot.
  if (s.esp_size < 64 * MiB) field_error("disk.esp", "ESP must be at least 64M");
  if (s.slot_size < 16 * MiB) field_error("disk.slot", "a slot must be at least 16M");
  // The disk image's own rule, so a disk that does not fit fails here, not after the build.
  (void)check_disk_sizes(s.disk_size, s.esp_size, s.slot_size);
}

void parse_boot(const json& j, Spec& s) {
  const json& boot = get_object(j, "boot", "boot");
  check_keys(boot, "boot", {"cmdline", "tries"});
  s.cmdline = get_string(boot, "cmdline", "boot.cmdline", "");
  for (char c : s.cmdline)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      field_error("boot.cmdline", "contains a control character (newline?); use one line");
  if (const json* t = member(boot, "tries")) {
    if (!t->is_number_integer()) field_error("boot.tries", "expected an integer, got " + t->dump());
    long long tries = t->get<long long>();
    if (tries < 1 || tries > 10)
      field_error("boot.tries", std::to_string(tries) + " is out of range; use 1..10");
    s.tries = static_cast<int>(tries);
  }
}

// The enrollment keys must be the ones whose db trusts the signing certificate: keys from
// another keygen run would be enrolled and then refuse the image's own loader.
void parse_secure_boot_enroll(const json& sb, Spec& s) {
  const json* e = member(sb, "enroll");
  if (!e) return;
  if (!e->is_object()) field_error("secure_boot.enroll", "expected an object, got " + e->dump());
  check_keys(*e, "secure_boot.enroll", {"keys", "mode"});
  SecureBootEnroll en;
  const fs::path dir =
      existing_path(s.spec_dir, get_string(*e, "keys", "secure_boot.enroll.keys", std::nullopt),
                    "secure_boot.enroll.keys", true);
  en.keys = dir.string();
  en.mode = get_string(*e, "mode", "secure_boot.enroll.mode", "manual");
  if (en.mode != "manual" && en.mode != "force")
    field_error("secure_boot.enroll.mode", "'" + en.mode + "' is not a mode; use manual or force");
  for (const char* f : {"PK.auth", "KEK.auth", "db.auth", "db.crt"})
    if (!fs::is_regular_file(dir / f))
      field_error("secure_boot.enroll.keys",
                  "has no " + std::string(f) + " (looked for " + (dir / f).string() +
                      "); name the output directory of osup-build keygen --secure-boot");
  if (read_text_file(dir / "db.crt") != read_text_file(s.secure_boot->cert))
    field_error("secure_boot.enroll.keys",
                (dir / "db.crt").string() + " is not secure_boot.cert; the enrolled db would " +
                    "refuse the image's loader. Use the keys the db key came from");
  s.secure_boot_enroll = en;
}

// Paths are checked, and the key against the certificate, before any build work.
void parse_secure_boot(const json& j, Spec& s) {
  const json* sb = member(j, "secure_boot");
  if (!sb) return;
  if (!sb->is_object()) field_error("secure_boot", "expected an object, got " + sb->dump());
  check_keys(*sb, "secure_boot", {"key", "cert", "enroll"});
  SecureBootKey k;
  k.key = existing_path(s.spec_dir, get_string(*sb, "key", "secure_boot.key", std::nullopt),
                        "secure_boot.key", false);
  k.cert = existing_path(s.spec_dir, get_string(*sb, "cert", "secure_boot.cert", std::nullopt),
                         "secure_boot.cert", false);
  check_secure_boot_key(k, "field 'secure_boot'");
  s.secure_boot = k;
  parse_secure_boot_enroll(*sb, s);
}

}  // namespace

Spec parse_spec(const json& j, const fs::path& spec_dir_in) {
  if (!j.is_object()) fail("expected a JSON object at the top level");
  check_keys(j, "",
             {"name", "version", "arch", "compatible", "rootfs", "overlay", "hooks", "filesystem",
              "disk", "boot", "bundle", "secure_boot"});
  Spec s;
  s.spec_dir = fs::absolute(spec_dir_in).lexically_normal();

  s.name = get_string(j, "name", "name", std::nullopt);
  check_identifier(s.name, "name", false);
  s.version = get_string(j, "version", "version", std::nullopt);
  check_identifier(s.version, "version", true);
  s.arch = parse_arch(get_string(j, "arch", "arch", "x86_64"), "field 'arch'");
  s.compatible = get_string(j, "compatible", "compatible", s.name + "-" + arch_name(s.arch));
  check_identifier(s.compatible, "compatible", false);

  parse_rootfs(j, s);
  parse_filesystem(j, s);
  parse_disk(j, s);
  parse_boot(j, s);

  const json& bundle = get_object(j, "bundle", "bundle");
  check_keys(bundle, "bundle", {"compression"});
  s.bundle_compression =
      parse_bundle_compression(get_string(bundle, "compression", "bundle.compression", "auto"),
                               "field 'bundle.compression'");
  parse_secure_boot(j, s);
  return s;
}

Spec load_spec(const std::string& path) {
  return with_context("spec " + path, [&] {
    std::ifstream in(path);
    if (!in) fail("cannot read it: " + std::string(std::strerror(errno)));
    std::stringstream ss;
    ss << in.rdbuf();
    json j;
    try {
      j = json::parse(ss.str());
    } catch (const json::parse_error& e) {
      std::string msg = e.what();
      // Drop nlohmann's "[json.exception.parse_error.101] " prefix: users need the position.
      if (auto p = msg.find("] "); msg.starts_with("[json.exception") && p != std::string::npos)
        msg = msg.substr(p + 2);
      fail("invalid JSON: " + msg);
    }
    fs::path dir = fs::path(path).parent_path();
    return parse_spec(j, dir.empty() ? fs::path(".") : dir);
  });
}

void override_arch(Spec& spec, Arch arch) {
  if (spec.compatible == spec.name + "-" + arch_name(spec.arch))
    spec.compatible = spec.name + "-" + arch_name(arch);
  spec.arch = arch;
}

}  // namespace osup::build
