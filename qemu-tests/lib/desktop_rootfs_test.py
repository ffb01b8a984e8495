#!/usr/bin/env python3
"""Unit tests of desktop_rootfs.py (CTest: qemu-tests desktop rootfs checks, label unit)
on small trees made here: each check passes a good tree and names what is wrong in a bad
one; the package list is read from the real desktop hook."""
import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import desktop_rootfs as d  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def write(path, text="", mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def status(*packages):
    return "\n".join(f"Package: {name}\nStatus: {st}\nVersion: 1\n" for name, st in packages)


class TreeTest(unittest.TestCase):
    def setUp(self):
        self.t = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.t)


class Packages(TreeTest):
    def test_hook_list_follows_the_arch(self):
        hook = REPO / "images/desktop/hooks/15-desktop-packages"
        amd64, arm64 = d.hook_packages(hook, "amd64"), d.hook_packages(hook, "arm64")
        for name in ("gdm3", "gnome-shell", "gnome-software-plugin-flatpak", "flatpak", "podman"):
            self.assertIn(name, amd64)
        self.assertIn("intel-microcode", amd64)
        self.assertNotIn("intel-microcode", arm64)
        self.assertFalse([w for w in amd64 if w.startswith("-") or "$" in w], amd64)
        kernel = d.hook_packages(REPO / "images/minimal/hooks/10-kernel", "arm64")
        self.assertEqual(kernel, ["linux-image-arm64"])

    def test_missing_half_installed_and_pending_triggers_are_named(self):
        write(self.t / "var/lib/dpkg/status", status(
            ("gdm3", "install ok installed"), ("nautilus", "install ok half-configured"),
            ("libfoo", "install ok triggers-pending"), ("old", "deinstall ok config-files")))
        errors = d.check_packages(self.t, ["gdm3", "nautilus", "podman"])
        self.assertEqual(len(errors), 4, errors)
        self.assertTrue(any("podman" in e and "unknown to dpkg" in e for e in errors))
        self.assertTrue(any("libfoo" in e and "triggers-pending" in e for e in errors))
        write(self.t / "var/lib/dpkg/triggers/Unincorp", "glib-schemas libfoo\n")
        self.assertEqual(len(d.check_packages(self.t, ["gdm3"])), 3)

    def test_all_installed_passes(self):
        write(self.t / "var/lib/dpkg/status", status(("gdm3", "install ok installed")))
        write(self.t / "var/lib/dpkg/triggers/Unincorp", "")
        self.assertEqual(d.check_packages(self.t, ["gdm3"]), [])


class Tmpfiles(TreeTest):
    def test_writes_under_usr_are_refused_and_no_ops_pass(self):
        (self.t / "usr/share/present").mkdir(parents=True)
        (self.t / "usr/lib").mkdir(parents=True)
        os.symlink("/etc/x", self.t / "usr/lib/link")
        write(self.t / "usr/lib/tmpfiles.d/a.conf",
              "# comment\nd /usr/share/present 0755 - - -\nd /usr/share/absent 0755 - - -\n"
              "L /usr/lib/link - - - - /etc/x\nz /usr/bin/tool 0755\nx /usr/tmp\nd /var/lib/ok\n")
        errors = d.check_tmpfiles(self.t)
        self.assertEqual(len(errors), 2, errors)
        self.assertIn("usr/lib/tmpfiles.d/a.conf:3: 'd /usr/share/absent'", errors[0])
        self.assertIn(":5: 'z /usr/bin/tool'", errors[1])

    def test_etc_overrides_and_masks_by_name(self):
        write(self.t / "usr/lib/tmpfiles.d/a.conf", "f /usr/lib/new\n")
        self.assertEqual(len(d.check_tmpfiles(self.t)), 1)
        (self.t / "etc/tmpfiles.d").mkdir(parents=True)
        os.symlink("/dev/null", self.t / "etc/tmpfiles.d/a.conf")
        self.assertEqual(d.check_tmpfiles(self.t), [])
        os.unlink(self.t / "etc/tmpfiles.d/a.conf")
        write(self.t / "etc/tmpfiles.d/a.conf", "w /usr/lib/new - - - - x\n")
        self.assertIn("etc/tmpfiles.d/a.conf:1", d.check_tmpfiles(self.t)[0])


class Caches(TreeTest):
    def test_missing_and_stale_caches_are_named(self):
        s = self.t / "usr/share/glib-2.0/schemas"
        write(s / "org.gnome.x.gschema.xml", mtime=2000)
        self.assertIn("gschemas.compiled: missing", d.check_caches(self.t)[0])
        write(s / "gschemas.compiled", mtime=1000)
        self.assertIn("older than what it indexes", d.check_caches(self.t)[0])
        os.utime(s / "gschemas.compiled", (3000, 3000))
        self.assertEqual(d.check_caches(self.t), [])

    def test_icon_theme_and_gio_modules(self):
        theme = self.t / "usr/share/icons/hicolor"
        write(theme / "index.theme")
        write(theme / "48x48/apps/x.png")
        gio = self.t / "usr/lib/x86_64-linux-gnu/gio/modules"
        write(gio / "libgvfsdbus.so", mtime=5000)
        errors = d.check_caches(self.t)
        self.assertEqual(len(errors), 2, errors)
        write(theme / "icon-theme.cache")
        write(gio / "giomodule.cache", mtime=6000)
        os.utime(theme, (100, 100))
        self.assertEqual(d.check_caches(self.t), [])


@unittest.skipUnless(shutil.which("systemctl"), "systemctl missing")
class Units(TreeTest):
    def unit(self, name, install):
        write(self.t / "usr/lib/systemd/system" / name, f"[Unit]\n[Service]\nExecStart=/bin/true\n[Install]\n{install}\n")

    def enable(self, name, target):
        wants = self.t / f"etc/systemd/system/{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/usr/lib/systemd/system/{name}", wants / name)

    def test_good_tree_passes_and_a_live_packagekit_is_named(self):
        write(self.t / "usr/lib/systemd/system/graphical.target", "[Unit]\n")
        self.unit("gdm3.service", "Alias=display-manager.service")
        (self.t / "etc/systemd/system").mkdir(parents=True)
        os.symlink("/usr/lib/systemd/system/gdm3.service", self.t / "etc/systemd/system/display-manager.service")
        for name in d.UNITS_ENABLED:
            self.unit(name, "WantedBy=multi-user.target")
            self.enable(name, "multi-user.target")
        os.symlink("/usr/lib/systemd/system/graphical.target", self.t / "etc/systemd/system/default.target")
        self.unit("packagekit.service", "WantedBy=multi-user.target")
        self.assertEqual(d.check_units(self.t), ["unit packagekit.service: 'disabled', want masked (updates come from osup)"])
        os.symlink("/dev/null", self.t / "etc/systemd/system/packagekit.service")
        self.assertEqual(d.check_units(self.t), [])
        os.unlink(self.t / "etc/systemd/system/display-manager.service")
        self.assertEqual(d.check_units(self.t), ["display-manager.service is missing, want GDM's unit: GDM would not start"])
        os.unlink(self.t / "etc/systemd/system/multi-user.target.wants/NetworkManager.service")
        self.assertIn("unit NetworkManager.service: 'disabled', want enabled", d.check_units(self.t))


if __name__ == "__main__":
    unittest.main()
