// osup-build: builds signed A/B disk images and update bundles (see README.md).
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/cli_args.h"
#include "base/error.h"
#include "builder/flash.h"
#include "builder/inspect.h"
#include "builder/pipeline.h"
#include "format/signature.h"

namespace fs = std::filesystem;
using namespace osup;

namespace {

constexpr const char* kUsage =
    "usage: osup-build COMMAND [ARGS]\n"
    "\n"
    "  keygen --out DIR [--type ed25519|ecdsa|rsa]\n"
    "      write DIR/osup.key (private, 0600) and DIR/osup.pub.pem\n"
    "  image SPEC.json --key KEY.pem --out DIR [--version V] [--arch x86_64|aarch64]\n"
    "        [--deb PKG.deb] [--overlay DIR] [--incremental] [--workdir DIR]\n"
    "        [--keep-workdir] [--no-disk]\n"
    "        [--bundle-compression auto|zstd|none] [--progress auto|bar|json|none]\n"
    "      build NAME-VERSION-ARCH.img (disk), .osup (bundle) and .manifest.json;\n"
    "      --incremental reuses the tree built by the hooks when nothing they see changed\n"
    "  inspect FILE [--pubkey PEM] [--json]\n"
    "      show what a bundle or disk image holds; --pubkey checks signatures and hashes\n"
    "  flash IMAGE DEVICE [--yes] [--progress auto|bar|json|none]\n"
    "      write IMAGE's data extents to DEVICE, then read back and compare\n";

int cmd_keygen(const std::vector<std::string>& args) {
  CliArgs a("osup-build keygen", args, {"out", "type"}, {});
  a.expect_positionals(0, 0, "osup-build keygen --out DIR [--type ed25519|ecdsa|rsa]");
  fs::path dir = a.required("out", "osup-build keygen --out DIR");
  fs::create_directories(dir);
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
  std::fprintf(stderr, "osup-build: unknown command '%s'; run osup-build --help\n", cmd.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run_cli("osup-build", [&] { return dispatch(std::move(args)); });
}
