#!/usr/bin/env python3
"""Checks a built desktop root tree without booting it (qemu-tests/desktop-rootfs, the
CI's stand-in for the desktop tier's boot):

- packages: every package the spec's debootstrap list and the desktop hook name is
  installed, and none is half-installed or waits for a trigger (on a read-only root no
  trigger ever runs);
- units: GDM, NetworkManager and osup's units enabled, graphical.target the default,
  PackageKit masked, networkd, apt's timers and udisks2 off (read with `systemctl --root`);
- nothing needs to write /usr at boot: no tmpfiles.d line would create, change or
  remove anything under /usr, and the caches Debian's triggers build (GLib schemas,
  icon, MIME, desktop-file, GIO module and pixbuf loader caches) exist and are not older
  than what they index.

    desktop_rootfs.py TREE --spec images/desktop.json [--json]

Exit 0 when every check passes, 1 with one line per failure otherwise.
"""
import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

UNITS_ENABLED = ["NetworkManager.service", "osup-health-check.service",
                 "osup-mark-good.service", "osup-update.timer"]
UNITS_MASKED = ["packagekit.service"]
# Off at boot: networkd (NetworkManager runs the network), apt's timers (the root is read-only),
# udisks2 (started by D-Bus activation when asked; at boot it failed its start timeout).
UNITS_OFF = ["systemd-networkd.service", "apt-daily.timer", "apt-daily-upgrade.timer",
             "udisks2.service"]
# What the last run looked at, for its summary line.
CHECKED = {"packages in dpkg": 0, "tmpfiles.d lines": 0, "caches": 0}
# tmpfiles.d types that only keep things out of cleaning: everything else writes.
TMPFILES_READ_ONLY = {"x", "X"}


def hook_packages(hook, deb_arch):
    """The package names of the hook's `apt-get install` command (its continuation lines
    joined), with shell variables the hook sets for DEB_ARCH expanded."""
    text = Path(hook).read_text()
    joined = re.sub(r"\\\n", " ", text)
    variables = {}
    for m in re.finditer(r'^\s*\[ "\$arch" = (\S+) \] && (\w+)="([^"]*)"', text, re.M):
        if m.group(1) == deb_arch:
            variables[m.group(2)] = m.group(3)
    names = []
    for line in joined.splitlines():
        if "apt-get install" not in line:
            continue
        for word in shlex.split(line.split("apt-get install", 1)[1], comments=True):
            if word.startswith("$"):
                names += variables.get(word.strip("${}"), "").split()
            elif not word.startswith("-"):
                names.append(re.sub(r"\$\{?arch\}?", deb_arch, word))
    return names


def dpkg_status(tree):
    """{package: (want, error flag, status)} from the tree's dpkg database."""
    out = {}
    text = (Path(tree) / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        if "Package" in fields and "Status" in fields:
            out[fields["Package"]] = tuple(fields["Status"].split())
    return out


def check_packages(tree, wanted):
    status = dpkg_status(tree)
    CHECKED["packages in dpkg"] = len(status)
    errors = []
    for name in wanted:
        st = status.get(name)
        if not st or st[2] != "installed":
            errors.append(f"package {name}: not installed ({' '.join(st) if st else 'unknown to dpkg'})")
    for name, st in sorted(status.items()):
        if st[1] != "ok" or st[2] not in ("installed", "not-installed", "config-files"):
            errors.append(f"package {name}: left '{' '.join(st)}' (a trigger or configure step never ran)")
    pending = Path(tree) / "var/lib/dpkg/triggers/Unincorp"
    if pending.exists() and pending.read_text().strip():
        errors.append(f"dpkg triggers pending in {pending}: {pending.read_text().split()[:3]}")
    return errors


def systemctl(tree, *args):
    r = subprocess.run(["systemctl", f"--root={tree}", *args], capture_output=True, text=True)
    return r.stdout.strip() or r.stderr.strip()


def check_units(tree):
    errors = []
    for unit in UNITS_ENABLED:
        state = systemctl(tree, "is-enabled", unit)
        if state != "enabled":
            errors.append(f"unit {unit}: '{state}', want enabled")
    for unit in UNITS_MASKED:
        state = systemctl(tree, "is-enabled", unit)
        if state != "masked":
            errors.append(f"unit {unit}: '{state}', want masked (updates come from osup)")
    for unit in UNITS_OFF:
        state = systemctl(tree, "is-enabled", unit)
        if state in ("enabled", "enabled-runtime"):
            errors.append(f"unit {unit}: enabled, want it off at boot (see UNITS_OFF)")
    default = systemctl(tree, "get-default")
    if default != "graphical.target":
        errors.append(f"default target is '{default}', want graphical.target")
    # GDM's unit has no [Install] target: enabling it is the display-manager alias.
    dm = Path(tree) / "etc/systemd/system/display-manager.service"
    if not dm.is_symlink() or not dm.readlink().name.startswith("gdm"):
        errors.append(f"display-manager.service is {str(dm.readlink()) if dm.is_symlink() else 'missing'}, "
                      "want GDM's unit: GDM would not start")
    return errors


def tmpfiles_lines(tree):
    """(file, line number, type, path) of the tmpfiles.d configuration systemd reads:
    /etc overrides /run overrides /usr/lib by file name."""
    chosen = {}
    for d in ("usr/lib/tmpfiles.d", "run/tmpfiles.d", "etc/tmpfiles.d"):
        for f in sorted((Path(tree) / d).glob("*.conf")):
            chosen[f.name] = f
    for name in sorted(chosen):
        f = chosen[name]
        if f.is_symlink() and str(f.readlink()) == "/dev/null":
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            words = line.split()
            if len(words) >= 2 and not words[0].startswith("#"):
                yield f, n, words[0].rstrip("!-=~^+"), words[1]


def check_tmpfiles(tree):
    errors = []
    for f, n, kind, path in tmpfiles_lines(tree):
        CHECKED["tmpfiles.d lines"] += 1
        if not (path == "/usr" or path.startswith("/usr/")) or kind in TMPFILES_READ_ONLY:
            continue
        target = Path(tree) / path.lstrip("/")
        # Creating what the image already holds is a no-op; anything else writes /usr.
        exists = target.is_symlink() if kind == "L" else target.exists()
        if kind in ("d", "D", "v", "q", "Q", "L", "f") and exists:
            continue
        rel = f.relative_to(tree)
        errors.append(f"/{rel}:{n}: '{kind} {path}' would write under the read-only /usr at boot")
    return errors


def newest(paths):
    return max((p.lstat().st_mtime for p in paths), default=0.0)


def check_caches(tree):
    t = Path(tree)
    errors = []

    def rel(p):
        return p.relative_to(t)

    def cache(path, inputs, what, rebuild):
        c = t / path
        ins = list(inputs)
        if not ins:
            return
        CHECKED["caches"] += 1
        if not c.exists():
            errors.append(f"/{path}: missing; {what} would need rebuilding under /usr ({rebuild} in a hook)")
        elif c.stat().st_mtime < newest(ins):
            errors.append(f"/{path}: older than what it indexes; {what} is stale ({rebuild} in a hook)")

    schemas = t / "usr/share/glib-2.0/schemas"
    cache("usr/share/glib-2.0/schemas/gschemas.compiled",
          [*schemas.glob("*.gschema.xml"), *schemas.glob("*.gschema.override")],
          "GSettings schemas", "glib-compile-schemas")
    cache("usr/share/mime/mime.cache", (t / "usr/share/mime/packages").glob("*.xml"),
          "the MIME database", "update-mime-database")
    cache("usr/share/applications/mimeinfo.cache", (t / "usr/share/applications").glob("*.desktop"),
          "the desktop-file MIME cache", "update-desktop-database")
    for theme in sorted((t / "usr/share/icons").glob("*/index.theme")):
        d = theme.parent
        if any(p.suffix in (".png", ".svg") for p in d.rglob("*")):
            cache(f"{rel(d)}/icon-theme.cache", [d], f"the {d.name} icon theme", "gtk-update-icon-cache")
    for gio in t.glob("usr/lib/*/gio/modules"):
        cache(f"{rel(gio)}/giomodule.cache", gio.glob("*.so"), "GIO's module list", "gio-querymodules")
    for loaders in t.glob("usr/lib/*/gdk-pixbuf-2.0/2.10.0/loaders"):
        cache(f"{rel(loaders.parent)}/loaders.cache", loaders.glob("*.so"),
              "gdk-pixbuf's loader list", "gdk-pixbuf-query-loaders")
    return errors


def spec_packages(spec_path, deb_arch):
    spec = json.loads(Path(spec_path).read_text())
    base = Path(spec_path).parent
    names = list(spec["rootfs"]["debootstrap"].get("packages", []))
    for hook in spec.get("hooks", []):
        names += hook_packages(base / hook, deb_arch)
    return names + ["osup"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tree")
    p.add_argument("--spec", required=True)
    p.add_argument("--deb-arch", default="amd64")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    wanted = spec_packages(a.spec, a.deb_arch)
    checks = {
        "packages": check_packages(a.tree, wanted),
        "units": check_units(a.tree),
        "tmpfiles": check_tmpfiles(a.tree),
        "caches": check_caches(a.tree),
    }
    failures = [e for errs in checks.values() for e in errs]
    if a.json:
        print(json.dumps({"packages_named": len(wanted), "checked": CHECKED, "failures": checks}, indent=2))
    else:
        for e in failures:
            print(f"desktop-rootfs: {e}")
        print(f"desktop-rootfs: {len(wanted)} packages named, {CHECKED['packages in dpkg']} in dpkg, "
              f"{CHECKED['tmpfiles.d lines']} tmpfiles.d lines and {CHECKED['caches']} caches checked; "
              f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
