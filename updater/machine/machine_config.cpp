#include "updater/machine/machine_config.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/fd.h"
#include "format/json_fields.h"
#include "updater/http.h"

using nlohmann::json;

namespace osup::machine {
namespace {

// One parse: the document's name and the helpers that name a field in errors.
struct Reader {
  std::string doc;

  [[noreturn]] void bad(const std::string& field, const std::string& rule) const {
    json_field_error(doc, field, rule);
  }
  JsonFields fields(const json& j, const std::string& path) const { return {j, doc, path}; }

  // An object whose keys are names the caller checks; each value is an object.
  const json& object(JsonFields& f, const std::string& key) const {
    static const json empty = json::object();
    const json* v = f.opt(key);
    if (!v) return empty;
    if (!v->is_object()) bad(f.name(key), "must be a JSON object");
    return *v;
  }

  void name(const std::string& field, const std::string& n) const {
    if (n.empty() || n.size() > 63 || !all_of_chars(n, "_.-") || n[0] == '-' || n[0] == '.' ||
        n[0] == '_' || std::any_of(n.begin(), n.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
      bad(field,
          "is not a valid name: use 1-63 lowercase letters, digits and . _ - (starting "
          "with a letter or digit)");
  }

  void absolute(const std::string& field, const std::string& p) const {
    if (p.empty() || p[0] != '/' || p.find('\n') != std::string::npos)
      bad(field, "must be an absolute path, not '" + p + "'");
  }
};

OsSection parse_os(const Reader& r, const json& j) {
  JsonFields f = r.fields(j, "os");
  OsSection os;
  os.channel = f.str("channel");
  if (!is_url(os.channel)) r.bad("os.channel", "must be an http:// or https:// URL");
  os.ca = f.opt_str("ca");
  if (os.ca) r.absolute("os.ca", *os.ca);
  f.done();
  return os;
}

void parse_remotes(const Reader& r, const json& j, MachineConfig& c) {
  for (const auto& [name, v] : j.items()) {
    const std::string path = "apps.remotes." + name;
    r.name(path, name);
    JsonFields f = r.fields(v, path);
    FlatpakRemote rem;
    rem.url = f.str("url");
    if (!is_url(rem.url) && !rem.url.starts_with("file:///"))
      r.bad(path + ".url", "must be an http(s):// or file:/// URL");
    rem.gpg_key = f.opt_str("gpg_key");
    rem.gpg_verify = f.boolean("gpg_verify", true);
    if (rem.gpg_key) r.absolute(path + ".gpg_key", *rem.gpg_key);
    if (rem.gpg_verify && !rem.gpg_key)
      r.bad(path, "needs gpg_key (the remote's key file) or \"gpg_verify\": false");
    f.done();
    c.remotes[name] = rem;
  }
}

// Each entry is a word flatpak knows, optionally denied with a leading '!'.
void check_words(const Reader& r, const std::string& field, const std::vector<std::string>& v,
                 const std::set<std::string>& known) {
  for (const std::string& w : v) {
    const std::string bare = w.starts_with("!") ? w.substr(1) : w;
    if (!known.count(bare)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      r.bad(field, "has unknown entry '" + w + "'; known: " + list);
    }
  }
}

Permissions parse_permissions(const Reader& r, const json& j, const std::string& path) {
  JsonFields f = r.fields(j, path);
  Permissions p{f.str_list("filesystems"), f.str_list("devices"), f.str_list("sockets"),
                f.str_list("shares")};
  for (const std::string& fs : p.filesystems)
    if (fs.empty() || fs == "!" || fs.find_first_of(" \n;") != std::string::npos)
      r.bad(path + ".filesystems", "has an invalid entry '" + fs + "'");
  check_words(r, path + ".devices", p.devices, {"all", "dri", "input", "kvm", "shm", "usb"});
  check_words(r, path + ".sockets", p.sockets,
              {"cups", "fallback-x11", "gpg-agent", "pcsc", "pulseaudio", "session-bus", "ssh-auth",
               "system-bus", "wayland", "x11"});
  check_words(r, path + ".shares", p.shares, {"ipc", "network"});
  f.done();
  return p;
}

void parse_flatpaks(const Reader& r, const json& j, MachineConfig& c) {
  for (const auto& [id, v] : j.items()) {
    const std::string path = "apps.flatpaks." + id;
    if (id.size() > 255 || std::count(id.begin(), id.end(), '.') < 2 || !all_of_chars(id, "._-"))
      r.bad(path, "is not a Flatpak app id (reverse-DNS, like org.example.App)");
    JsonFields f = r.fields(v, path);
    FlatpakApp a;
    a.remote = f.str("remote");
    if (!c.remotes.count(a.remote))
      r.bad(path + ".remote", "names '" + a.remote + "', which apps.remotes does not list");
    a.branch = f.opt_str("branch").value_or("stable");
    if (a.branch.empty() || !all_of_chars(a.branch, "._-")) r.bad(path + ".branch", "is invalid");
    if (f.has("commit")) a.commit = f.sha256_hex("commit");
    if (const json* p = f.opt("permissions"))
      a.permissions = parse_permissions(r, *p, path + ".permissions");
    f.done();
    c.flatpaks[id] = a;
  }
}

Mount parse_mount(const Reader& r, const json& j, const std::string& path) {
  JsonFields f = r.fields(j, path);
  Mount m{f.str("host"), f.str("container"), f.boolean("read_only", false)};
  r.absolute(path + ".host", m.host);
  r.absolute(path + ".container", m.container);
  if (m.host.find(':') != std::string::npos || m.container.find(':') != std::string::npos)
    r.bad(path, "paths must not contain ':'");
  f.done();
  return m;
}

Port parse_port(const Reader& r, const json& j, const std::string& path) {
  JsonFields f = r.fields(j, path);
  Port p;
  const auto port = [&](const std::string& key) {
    const uint64_t v = f.u64(key);
    if (v == 0 || v > 65535) r.bad(path + "." + key, "must be a port number 1-65535");
    return static_cast<uint16_t>(v);
  };
  p.host = port("host");
  p.container = port("container");
  p.protocol = f.opt_str("protocol").value_or("tcp");
  if (p.protocol != "tcp" && p.protocol != "udp") r.bad(path + ".protocol", "must be tcp or udp");
  p.address = f.opt_str("address").value_or("");
  if (!all_of_chars(p.address, ".:")) r.bad(path + ".address", "must be an IP address");
  f.done();
  return p;
}

// A list of objects at KEY, each parsed by fn with its path "PATH.KEY[i]".
template <class T, class Fn>
std::vector<T> parse_list(const Reader& r, JsonFields& f, const std::string& key, Fn fn) {
  std::vector<T> out;
  const json* v = f.opt(key);
  if (!v) return out;
  if (!v->is_array()) r.bad(f.name(key), "must be a list");
  for (size_t i = 0; i < v->size(); ++i)
    out.push_back(fn(r, (*v)[i], f.name(key) + "[" + std::to_string(i) + "]"));
  return out;
}

Container parse_container(const Reader& r, const json& j, const std::string& path,
                          const std::string& name) {
  r.name(path, name);
  JsonFields f = r.fields(j, path);
  Container c;
  c.image = f.str("image");
  if (c.image.empty() || c.image.find_first_of(" @\n") != std::string::npos)
    r.bad(path + ".image",
          "must be an image reference like registry/name:tag (pin with "
          "\"digest\", not '@')");
  c.digest = f.opt_str("digest");
  if (c.digest && (!c.digest->starts_with("sha256:") || c.digest->size() != 71 ||
                   !is_lower_hex(c.digest->substr(7))))
    r.bad(path + ".digest", "must be sha256: followed by 64 lowercase hex digits");
  c.command = f.str_list("command");
  c.mounts = parse_list<Mount>(r, f, "mounts", parse_mount);
  c.ports = parse_list<Port>(r, f, "ports", parse_port);
  if (const json* env = f.opt("env")) {
    if (!env->is_object()) r.bad(path + ".env", "must be an object of NAME: value strings");
    for (const auto& [k, v] : env->items()) {
      if (k.empty() || (k[0] >= '0' && k[0] <= '9') || !all_of_chars(k, "_"))
        r.bad(path + ".env." + k, "is not a valid variable name");
      if (!v.is_string()) r.bad(path + ".env." + k, "must be a string");
      c.env[k] = v.get<std::string>();
    }
  }
  c.autostart = f.boolean("autostart", true);
  f.done();
  return c;
}

DataSection parse_data(const Reader& r, const json& j) {
  if (j.is_object() && j.contains("password"))
    r.bad("data.password",
          "is not allowed: a password never goes in the machine file; use "
          "password_file or password_env");
  JsonFields f = r.fields(j, "data");
  DataSection d;
  d.repository = f.str("repository");
  if (d.repository.empty()) r.bad("data.repository", "must not be empty");
  if (d.repository[0] != '/' && !d.repository.starts_with("sftp:") &&
      !d.repository.starts_with("s3:") && !d.repository.starts_with("rest:"))
    r.bad("data.repository", "must be an absolute path or an sftp:, s3: or rest: URL");
  d.password_file = f.opt_str("password_file");
  d.password_env = f.opt_str("password_env");
  if (d.password_file.has_value() == d.password_env.has_value())
    r.bad("data", "needs exactly one of password_file and password_env");
  if (d.password_file) r.absolute("data.password_file", *d.password_file);
  if (d.password_env && (d.password_env->empty() || !all_of_chars(*d.password_env, "_")))
    r.bad("data.password_env", "is not a valid variable name");
  d.paths = f.str_list("paths");
  f.done();  // a misspelt "path" is named as unknown, not as "paths" missing
  if (d.paths.empty()) r.bad("data.paths", "must list at least one path to back up");
  for (size_t i = 0; i < d.paths.size(); ++i)
    r.absolute("data.paths[" + std::to_string(i) + "]", d.paths[i]);
  return d;
}

}  // namespace

MachineConfig parse_machine_config(const std::string& text, const std::string& what) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) fail(what + ": not valid JSON; check the file's syntax");
  Reader r{what};
  JsonFields top = r.fields(j, "");
  check_format(what, top.small_int("format"), kMachineFormat);
  MachineConfig c;
  if (const json* os = top.opt("os")) c.os = parse_os(r, *os);
  if (const json* apps = top.opt("apps")) {
    JsonFields f = r.fields(*apps, "apps");
    parse_remotes(r, r.object(f, "remotes"), c);
    parse_flatpaks(r, r.object(f, "flatpaks"), c);
    f.done();
  }
  const json& containers = r.object(top, "containers");
  for (const auto& [name, v] : containers.items())
    c.containers[name] = parse_container(r, v, "containers." + name, name);
  if (const json* d = top.opt("data")) c.data = parse_data(r, *d);
  top.done();
  return c;
}

MachineConfig read_machine_config(const std::string& path) {
  std::string text = with_context("reading the machine file", [&] { return read_text_file(path); });
  return parse_machine_config(text, path);
}

}  // namespace osup::machine
