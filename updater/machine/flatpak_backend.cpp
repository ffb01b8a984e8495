#include "updater/machine/flatpak_backend.h"

#include <cstdio>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/process.h"
#include "base/temp_dir.h"
#include "updater/machine/disk_full.h"

namespace osup::machine {
namespace {

using Env = std::map<std::string, std::string>;

// `flatpak SUB --system ARGS...`, with ENV added (a throwaway installation for check()).
RunResult try_flatpak(const std::string& sub, const std::vector<std::string>& args,
                      const Env& env = {}) {
  std::vector<std::string> argv = {"flatpak", sub, "--system"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.env = env;
  o.stdin_data = "";  // never a question on the terminal (remote-delete asks one)
  return run(argv, o);
}

RunResult flatpak(const std::string& sub, const std::vector<std::string>& args) {
  RunResult r = try_flatpak(sub, args);
  if (r.exit_code != 0 && says_disk_full(r.err + r.out))
    fail("flatpak " + sub +
         " ran out of disk space (no space left on device); free space for "
         "the Flatpak installation (/var/lib/flatpak, the data partition) and run osup apply "
         "again");
  if (r.exit_code != 0)
    fail("flatpak " + sub + " failed (exit " + std::to_string(r.exit_code) +
         "): " + last_line(r.err));
  return r;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::vector<std::string>> rows(const std::string& out) {
  std::vector<std::vector<std::string>> r;
  for (const std::string& line : split(out, '\n')) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream in(line);
    while (std::getline(in, cell, '\t')) cells.push_back(cell);
    r.push_back(cells);
  }
  return r;
}

// The [Context] group of `flatpak override --show`: "filesystems=home:ro;!host;".
Permissions read_overrides(const std::string& id) {
  Permissions p;
  bool context = false;
  for (const std::string& line : split(flatpak("override", {"--show", id}).out, '\n')) {
    if (line.starts_with("[")) context = line == "[Context]";
    const size_t eq = line.find('=');
    if (!context || eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    const std::vector<std::string> values = split(line.substr(eq + 1), ';');
    if (key == "filesystems") p.filesystems = values;
    if (key == "devices") p.devices = values;
    if (key == "sockets") p.sockets = values;
    if (key == "shared") p.shares = values;
  }
  return p;
}

void set_overrides(const std::string& id, const Permissions& p) {
  flatpak("override", {"--reset", id});
  std::vector<std::string> args;
  const auto add = [&](const std::vector<std::string>& v, const std::string& yes,
                       const std::string& no) {
    for (const std::string& w : v)
      args.push_back(w.starts_with("!") ? "--" + no + "=" + w.substr(1) : "--" + yes + "=" + w);
  };
  add(p.filesystems, "filesystem", "nofilesystem");
  add(p.devices, "device", "nodevice");
  add(p.sockets, "socket", "nosocket");
  add(p.shares, "share", "unshare");
  if (args.empty()) return;
  args.push_back(id);
  flatpak("override", args);
}

std::vector<std::string> remote_args(const FlatpakRemote& r) {
  if (!r.gpg_verify) return {"--no-gpg-verify"};
  return {"--gpg-import=" + *r.gpg_key};
}

void install_app(const std::string& id, const FlatpakApp& a) {
  const std::string ref = id + "//" + a.branch;
  flatpak("install", {"-y", "--noninteractive", a.remote, ref});
  // flatpak install takes no commit: the pinned one is deployed right after.
  if (a.commit) flatpak("update", {"-y", "--noninteractive", "--commit=" + *a.commit, ref});
  set_overrides(id, a.permissions);
}

std::optional<InstalledFlatpak> find_app(const std::vector<InstalledFlatpak>& apps,
                                         const std::string& id, const std::string& branch) {
  std::optional<InstalledFlatpak> found;
  for (const InstalledFlatpak& a : apps)
    if (a.id == id && (!found || a.branch == branch)) found = a;
  return found;
}

}  // namespace

std::string flatpak_app_ref(const std::string& id, const std::string& branch) {
  static const std::string arch = last_line(run_checked({"flatpak", "--default-arch"}).out);
  return "app/" + id + "/" + arch + "/" + branch;
}

std::vector<ConfiguredRemote> FlatpakBackend::remotes() const {
  std::vector<ConfiguredRemote> out;
  for (const auto& row : rows(flatpak("remotes", {"--columns=name,url,options"}).out)) {
    if (row.size() < 2) continue;
    const bool no_verify = row.size() > 2 && row[2].find("no-gpg-verify") != std::string::npos;
    out.push_back({row[0], row[1], !no_verify});
  }
  return out;
}

std::vector<InstalledFlatpak> FlatpakBackend::apps() const {
  std::vector<InstalledFlatpak> out;
  for (const auto& row :
       rows(flatpak("list", {"--app", "--columns=application,branch,origin"}).out)) {
    if (row.size() < 3) continue;
    InstalledFlatpak a{row[0], row[1], row[2], "", {}};
    a.commit = last_line(flatpak("info", {"--show-commit", a.id + "//" + a.branch}).out);
    a.permissions = read_overrides(a.id);
    out.push_back(a);
  }
  return out;
}

std::map<std::string, std::string> FlatpakBackend::observe(Kind kind) {
  std::map<std::string, std::string> out;
  if (kind == Kind::remote) {
    for (const ConfiguredRemote& r : remotes())
      out[r.name] = remote_fingerprint(r.url, r.gpg_verify);
    return out;
  }
  const std::vector<InstalledFlatpak> installed = apps();
  std::set<std::string> ids;
  for (const InstalledFlatpak& a : installed) ids.insert(a.id);
  for (const std::string& id : ids) {
    const FlatpakApp* want = nullptr;
    if (desired_ && desired_->flatpaks.count(id)) want = &desired_->flatpaks.at(id);
    const InstalledFlatpak a = *find_app(installed, id, want ? want->branch : "");
    const bool pinned = want && want->commit;
    out[id] = flatpak_fingerprint(a.origin, a.branch, pinned ? a.commit : "", a.permissions);
  }
  return out;
}

void FlatpakBackend::create(const Resource& r, const MachineConfig& config) {
  if (r.kind == Kind::remote) {
    const FlatpakRemote& rem = config.remotes.at(r.name);
    std::vector<std::string> args = remote_args(rem);
    args.insert(args.end(), {r.name, rem.url});
    flatpak("remote-add", args);
    return;
  }
  install_app(r.name, config.flatpaks.at(r.name));
}

void FlatpakBackend::update(const Resource& r, const MachineConfig& config) {
  if (r.kind == Kind::remote) {
    const FlatpakRemote& rem = config.remotes.at(r.name);
    std::vector<std::string> args = remote_args(rem);
    if (rem.gpg_verify) args.push_back("--gpg-verify");
    args.insert(args.end(), {"--url=" + rem.url, r.name});
    flatpak("remote-modify", args);
    return;
  }
  const FlatpakApp& want = config.flatpaks.at(r.name);
  const std::optional<InstalledFlatpak> have = find_app(apps(), r.name, want.branch);
  if (!have || have->origin != want.remote || have->branch != want.branch) {
    remove(Kind::flatpak, r.name);  // another remote or branch: a fresh install
    install_app(r.name, want);
    return;
  }
  if (want.commit && have->commit != *want.commit)
    flatpak("update",
            {"-y", "--noninteractive", "--commit=" + *want.commit, r.name + "//" + want.branch});
  set_overrides(r.name, want.permissions);
}

void FlatpakBackend::remove(Kind kind, const std::string& name) {
  if (kind == Kind::remote) {
    remove_remote(name);
    return;
  }
  // Every installed branch of the app osup installed; its runtime goes with its remote.
  for (const InstalledFlatpak& a : apps())
    if (a.id == name) flatpak("uninstall", {"-y", "--noninteractive", a.id + "//" + a.branch});
  flatpak("override", {"--reset", name});
}

void FlatpakBackend::remove_remote(const std::string& name) {
  bool configured = false;
  for (const ConfiguredRemote& r : remotes()) configured = configured || r.name == name;
  if (!configured) return;
  // The runtimes that came from it, unless an app still needs one (flatpak refuses then).
  for (const auto& row : rows(flatpak("list", {"--runtime", "--columns=ref,origin"}).out))
    if (row.size() == 2 && row[1] == name)
      (void)try_flatpak("uninstall", {"-y", "--noninteractive", "runtime/" + row[0]});
  const RunResult r = try_flatpak("remote-delete", {name});
  if (r.exit_code == 0) return;
  if (r.err.find("installed refs") == std::string::npos)
    fail("flatpak remote-delete failed (exit " + std::to_string(r.exit_code) +
         "): " + last_line(r.err));
  // Apps osup did not install still come from it: it stays, and osup forgets it.
  std::fprintf(stderr,
               "osup: kept flatpak remote '%s': apps osup did not install still use what came "
               "from it\n",
               name.c_str());
}

void FlatpakBackend::check(const std::vector<Resource>& to_make, const MachineConfig& config) {
  std::set<std::string> remotes_used;
  for (const Resource& r : to_make)
    remotes_used.insert(r.kind == Kind::remote ? r.name : config.flatpaks.at(r.name).remote);
  if (remotes_used.empty()) return;
  const TempDir scratch("/tmp", "osup-flatpak-check-");
  const Env env = {{"FLATPAK_SYSTEM_DIR", scratch.path()}};
  std::map<std::string, std::set<std::string>> refs;
  for (const std::string& name : remotes_used) {
    const FlatpakRemote& rem = config.remotes.at(name);
    const std::string what = "flatpak remote '" + name + "' (" + rem.url + ")";
    std::vector<std::string> args = remote_args(rem);
    args.insert(args.end(), {name, rem.url});
    const RunResult added = try_flatpak("remote-add", args, env);
    const RunResult listed = added.exit_code != 0
                                 ? added
                                 : try_flatpak("remote-ls", {"--all", "--columns=ref", name}, env);
    if (listed.exit_code != 0) {
      const std::string why = last_line(listed.err);
      // flatpak: "Can't check signature: public key not found", "GPG signatures found, but
      // none are in trusted keyring", "GPG verification enabled, but no signatures found".
      const bool signature =
          why.find("signature") != std::string::npos || why.find("GPG") != std::string::npos;
      fail(what + " cannot be read: " + why +
           (signature ? "; check its gpg_key in the file (the key the repository is signed with)"
                      : "; check its url in the file and the network"));
    }
    for (const std::string& ref : split(listed.out, '\n')) refs[name].insert(ref);
  }
  for (const Resource& r : to_make) {
    if (r.kind != Kind::flatpak) continue;
    const FlatpakApp& a = config.flatpaks.at(r.name);
    const std::string ref = flatpak_app_ref(r.name, a.branch);
    if (!refs[a.remote].count(ref))
      fail("flatpak app '" + r.name + "': remote '" + a.remote + "' has no " + ref +
           "; check the app id and branch in the file");
    // --show-commit: the full listing aborts in flatpak 1.14 (docs/machine.md).
    if (a.commit &&
        last_line(try_flatpak("remote-info",
                              {"--show-commit", "--commit=" + *a.commit, a.remote, ref}, env)
                      .out) != *a.commit)
      fail("flatpak app '" + r.name + "': remote '" + a.remote + "' has no commit " + *a.commit +
           " of " + ref + "; check the pinned commit in the file");
  }
}

}  // namespace osup::machine
