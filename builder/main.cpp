// osup-build: builds signed A/B disk images and update bundles (see README.md).
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/cli_args.h"
#include "base/error.h"
#include "base/size.h"
#include "builder/flash.h"
#include "builder/inspect.h"
#include "builder/pipeline.h"
#include "builder/publish/publish.h"
#include "builder/secure_boot.h"
#include "format/signature.h"

namespace fs = std::filesystem;
using namespace osup;

namespace {

constexpr const char* kUsage =
    "usage: osup-build COMMAND [ARGS]\n"
    "\n"
    "  keygen --out DIR [--type ed25519|ecdsa|rsa]\n"
    "      write DIR/osup.key (private, 0600) and DIR/osup.pub.pem\n"
    "  keygen --secure-boot --out DIR [--name NAME]\n"
    "      write Secure Boot PK, KEK and db keys, certificates and enrollment files\n"
    "  image SPEC.json --key KEY.pem --out DIR [--version V] [--arch x86_64|aarch64]\n"
    "        [--deb PKG.deb] [--overlay DIR] [--incremental] [--workdir DIR]\n"
    "        [--keep-workdir] [--no-disk]\n"
    "        [--bundle-compression auto|zstd|none] [--progress auto|bar|json|none]\n"
    "      build NAME-VERSION-ARCH.img (disk), .osup (bundle) and .manifest.json;\n"
    "      --incremental reuses the tree built by the hooks when nothing they see changed\n"
    "  inspect FILE [--pubkey PEM] [--json]\n"
    "      show what a bundle or disk image holds; --pubkey checks signatures and hashes\n"
    "  flash IMAGE DEVICE [--yes] [--progress auto|bar|json|none]\n"
    "      write IMAGE's data extents to DEVICE, then read back and compare\n"
    "  publish BUNDLE --channel DIR --key KEY.pem [--deltas-from N] [--rollout PERCENT]\n"
    "          [--halt-after-failures N] [--halt-failure-percent P]\n"
    "          [--channel-name NAME] [--expires-in DAYS] [--json]\n"
    "      add a release to a channel directory for any static HTTP server: the bundle,\n"
    "      deltas from the last N (2) releases, and a new signed index.json\n"
    "  delta FROM.osup TO.osup --key KEY.pem --out FILE.osupd [--json]\n"
    "      make one delta (what publish does per source release)\n";

// --secure-boot: PK, KEK, db and their enrollment files (builder/secure_boot.h).
int keygen_secure_boot(const CliArgs& a, const fs::path& dir) {
  if (a.value("type"))
    fail("--type is for the image signing key; Secure Boot keys are always RSA-2048");
  const build::SecureBootKeySet set =
      build::make_secure_boot_keys(dir.string(), a.value_or("name", "osup"));
  for (const std::string& f : set.files) std::printf("%s\n", f.c_str());
  std::printf("owner GUID %s; sign images with db.key/db.crt (spec field secure_boot)\n",
              set.guid.c_str());
  return 0;
}

int cmd_keygen(const std::vector<std::string>& args) {
  CliArgs a("osup-build keygen", args, {"out", "type", "name"}, {"secure-boot"});
  a.expect_positionals(0, 0, "osup-build keygen --out DIR [--type ed25519|ecdsa|rsa]");
  fs::path dir = a.required("out", "osup-build keygen --out DIR");
  fs::create_directories(dir);
  if (a.flag("secure-boot")) return keygen_secure_boot(a, dir);
  if (a.value("name")) fail("--name goes with --secure-boot (the certificates' common name)");
  sig::KeyType type = sig::parse_key_type(a.value_or("type", "ed25519"));
  const std::string priv = (dir / "osup.key").string(), pub = (dir / "osup.pub.pem").string();
  sig::generate_keypair(type, priv, pub);
  std::printf("%s\n%s\nkey id %s\n", priv.c_str(), pub.c_str(),
              sig::PublicKey::load(pub).key_id().c_str());
  return 0;
}

int cmd_image(const std::vector<std::string>& args) {
  const std::string usage = "osup-build image SPEC.json --key KEY.pem --out DIR";
  CliArgs a("osup-build image", args,
            {"key", "out", "version", "arch", "workdir", "progress", "deb", "overlay",
             "bundle-compression"},
            {"keep-workdir", "no-disk", "incremental"});
  a.expect_positionals(1, 1, usage);
  build::ImageOptions o;
  o.spec_path = a.positionals()[0];
  o.key_path = a.required("key", usage);
  o.out_dir = a.required("out", usage);
  o.version = a.value("version");
  if (auto arch = a.value("arch")) o.arch = parse_arch(*arch, "--arch");
  o.workdir = a.value("workdir");
  o.deb = a.value("deb");
  o.overlay = a.value("overlay");
  o.incremental = a.flag("incremental");
  o.keep_workdir = a.flag("keep-workdir");
  o.disk = !a.flag("no-disk");
  if (auto c = a.value("bundle-compression"))
    o.bundle_compression = build::parse_bundle_compression(*c, "--bundle-compression");
  o.progress = parse_progress_mode(a.value_or("progress", "auto"));
  build::ImageOutputs out = build::build_image(o);
  for (const std::string& f : {out.disk, out.bundle, out.manifest})
    if (!f.empty()) std::printf("%s\n", f.c_str());
  for (const std::string& f : out.secure_boot) std::printf("%s\n", f.c_str());
  return 0;
}

int cmd_inspect(const std::vector<std::string>& args) {
  CliArgs a("osup-build inspect", args, {"pubkey"}, {"json"});
  a.expect_positionals(1, 1, "osup-build inspect FILE [--pubkey PEM] [--json]");
  build::inspect(a.positionals()[0], {a.value("pubkey"), a.flag("json")}, stdout);
  return 0;
}

int cmd_flash(const std::vector<std::string>& args) {
  CliArgs a("osup-build flash", args, {"progress"}, {"yes"});
  a.expect_positionals(2, 2, "osup-build flash IMAGE DEVICE [--yes]");
  build::FlashOptions o;
  o.yes = a.flag("yes");
  o.progress = parse_progress_mode(a.value_or("progress", "auto"));
  const std::string& image = a.positionals()[0];
  const std::string& device = a.positionals()[1];
  const build::FlashResult r = build::flash(image, device, o);
  std::printf("%s\n", build::describe(r, image, device).c_str());
  return 0;
}

int parse_count(const std::optional<std::string>& v, int fallback, const std::string& name,
                int max) {
  if (!v) return fallback;
  int n = -1;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size() || n < 0 || n > max)
    fail(name + " wants a whole number 0-" + std::to_string(max) + ", not '" + *v + "'");
  return n;
}

double ratio_percent(uint64_t part, uint64_t whole) {
  return whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

int cmd_publish(const std::vector<std::string>& args) {
  const std::string usage = "osup-build publish BUNDLE --channel DIR --key KEY.pem";
  CliArgs a("osup-build publish", args,
            {"channel", "key", "deltas-from", "rollout", "channel-name", "expires-in",
             "halt-after-failures", "halt-failure-percent"},
            {"json"});
  a.expect_positionals(1, 1, usage);
  build::PublishOptions o;
  o.bundle = a.positionals()[0];
  o.channel_dir = a.required("channel", usage);
  o.key_path = a.required("key", usage);
  o.deltas_from = parse_count(a.value("deltas-from"), 2, "--deltas-from", 100);
  o.rollout_percent = parse_count(a.value("rollout"), 100, "--rollout", 100);
  o.expires_in_days =
      static_cast<uint64_t>(parse_count(a.value("expires-in"), 30, "--expires-in", 3650));
  o.channel_name = a.value_or("channel-name", "stable");
  if (a.value("halt-after-failures"))
    o.halt_after_failures =
        parse_count(a.value("halt-after-failures"), 0, "--halt-after-failures", 1000000);
  if (a.value("halt-failure-percent"))
    o.halt_failure_percent =
        parse_count(a.value("halt-failure-percent"), 0, "--halt-failure-percent", 100);
  const build::PublishResult r = build::publish(o);
  const uint64_t full = r.release.bundle.size;
  if (a.flag("json")) {
    nlohmann::json ds = nlohmann::json::array();
    for (const auto& d : r.deltas)
      ds.push_back({{"from", d.entry.from_version},
                    {"path", d.entry.file.path},
                    {"bytes", d.stats.bytes},
                    {"seconds", d.stats.seconds}});
    nlohmann::json j{{"version", r.release.version}, {"bundle", r.release.bundle.path},
                     {"bundle_bytes", full},         {"serial", r.serial},
                     {"expires", r.expires},         {"deltas", ds}};
    if (!r.no_deltas.empty()) j["no_deltas"] = r.no_deltas;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("published %s %s (%s) as serial %llu: %s, %s\n", r.release.name.c_str(),
              r.release.version.c_str(), r.release.arch.c_str(),
              static_cast<unsigned long long>(r.serial), r.release.bundle.path.c_str(),
              format_size(full).c_str());
  for (const auto& d : r.deltas)
    std::printf("delta %s -> %s: %s (%.2f%% of the bundle), made in %.1f s\n",
                d.entry.from_version.c_str(), r.release.version.c_str(),
                format_size(d.stats.bytes).c_str(), ratio_percent(d.stats.bytes, full),
                d.stats.seconds);
  if (!r.no_deltas.empty()) std::printf("no delta: %s\n", r.no_deltas.c_str());
  return 0;
}

int cmd_delta(const std::vector<std::string>& args) {
  const std::string usage = "osup-build delta FROM.osup TO.osup --key KEY.pem --out FILE.osupd";
  CliArgs a("osup-build delta", args, {"key", "out", "workdir"}, {"json"});
  a.expect_positionals(2, 2, usage);
  const sig::PrivateKey key = sig::PrivateKey::load(a.required("key", usage));
  sig::TrustStore trust;
  trust.add(sig::PublicKey::from_pem(key.public_pem(), "--key"));
  const std::string out = a.required("out", usage);
  const std::string work = a.value_or("workdir", out + ".work");
  const build::BundleFiles from = build::extract_bundle(a.positionals()[0], trust, work + "/from");
  const build::BundleFiles to = build::extract_bundle(a.positionals()[1], trust, work + "/to");
  const build::DeltaStats st = build::make_delta(from, to, out);
  fs::remove_all(work);
  const uint64_t full = fs::file_size(a.positionals()[1]);
  if (a.flag("json")) {
    nlohmann::json j{{"bytes", st.bytes},
                     {"bundle_bytes", full},
                     {"seconds", st.seconds},
                     {"copy_blocks", st.copy_blocks},
                     {"literal_blocks", st.literal_blocks},
                     {"zero_blocks", st.zero_blocks}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "%s: %s (%.2f%% of the bundle), %llu blocks copied, %llu literal, %llu zero, "
        "%.1f s\n",
        out.c_str(), format_size(st.bytes).c_str(), ratio_percent(st.bytes, full),
        static_cast<unsigned long long>(st.copy_blocks),
        static_cast<unsigned long long>(st.literal_blocks),
        static_cast<unsigned long long>(st.zero_blocks), st.seconds);
  }
  return 0;
}

int dispatch(std::vector<std::string> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "keygen") return cmd_keygen(args);
  if (cmd == "image") return cmd_image(args);
  if (cmd == "inspect") return cmd_inspect(args);
  if (cmd == "flash") return cmd_flash(args);
  if (cmd == "publish") return cmd_publish(args);
  if (cmd == "delta") return cmd_delta(args);
  std::fprintf(stderr, "osup-build: unknown command '%s'; run osup-build --help\n", cmd.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run_cli("osup-build", [&] { return dispatch(std::move(args)); });
}
