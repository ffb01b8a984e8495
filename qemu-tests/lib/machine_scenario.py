#!/usr/bin/env python3
"""Restore a machine from one file, under QEMU (driven by qemu-tests/machine):

  1. machine 1 boots the machine image v1; the assets disk (/dev/vdb, label osup-assets)
     holds the machine file, the backup password, a local Flatpak repository and an OCI
     archive of a busybox image; the backup disk (/dev/vdc, label osup-backup) is empty.
     The image is loaded with `podman load` (the same digest on every machine: the file
     pins it), the file goes to /etc/osup/machine.json, and `osup apply` installs the
     Flatpak app (pinned to its first commit, with overrides) and two containers that
     reach each other by name (web serves /var/lib/web and publishes 127.0.0.1:8080,
     client fetches http://web/). The user writes files under /var/home (a link among
     them); `osup data backup` puts them and /var/lib/web into a restic repository on the
     backup disk;
  2. (--part all) `osup switch` to v2 (bundle on the assets disk), reboot: v2 runs,
     osup-apply.service applied at boot (the OS changed) and found nothing to do, and
     `osup apply --if-changed` then stops at the stamp; the app runs, the containers run,
     talk and answer on the port, the files are there; `osup rollback`, reboot: the same
     on v1;
  3. machine 2, a fresh disk from the same image, gets only the file, the password and
     the two disks: `osup apply`, then `osup data restore`: its app list (with commits),
     containers (image, digest, command, mounts, ports, networks, labels), the files
     (type, mode, owner, link target, sha256) are machine 1's, and `osup export` says
     the same of both machines.

    machine_scenario.py MACHINE1.img MACHINE2.img --assets A.img --backup B.img
                        [--part restore|all] [--v2-bundle NAME] [--log DIR] [--timeout S]

Prints one line per check, the measured times and sizes, and 'N passed, N failed'.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import check, results, step  # noqa: E402
from vm import VM, VMError  # noqa: E402

APP = "org.osuptest.Hello"
MOUNT = (
    "mkdir -p /run/osup-assets /run/osup-backup; "
    "mountpoint -q /run/osup-assets || mount -o ro LABEL=osup-assets /run/osup-assets; "
    "mountpoint -q /run/osup-backup || mount LABEL=osup-backup /run/osup-backup"
)
# What must be equal on both machines (and across switch and rollback).
APPS = "flatpak list --system --app --columns=application,branch,origin; flatpak info --show-commit " + APP
# Each container: image, its ID and digest, command, mounts, ports, networks, labels.
CONTAINERS = (
    "podman ps -a --format '{{.Names}}' | sort | xargs podman inspect --format "
    "'{{.Name}} {{.ImageName}} {{.Image}} {{.ImageDigest}} {{.Config.Cmd}} "
    "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}"
    "{{range $p, $b := .HostConfig.PortBindings}}{{$p}}={{range $b}}{{.HostIP}}:{{.HostPort}}{{end}} {{end}}"
    "{{range $n, $v := .NetworkSettings.Networks}}{{$n}} {{end}}{{.Config.Labels}}'"
)
# The user's files: every path with its type, mode and owner, a link's target, a file's sha256.
FILES = ("cd /var && find home lib/web -printf '%y %m %u:%g %p -> %l\\n' | sort && "
         "find home lib/web -type f -print0 | sort -z | xargs -0 sha256sum")
LOAD = "podman load -q -i /run/osup-assets/busybox-image.tar"
# web's port 80 published on the machine's 127.0.0.1:8080 (bash's /dev/tcp: no wget here).
PORT = ("(exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3 && "
        "timeout 20 cat <&3)")
VERSION = ". /etc/os-release; echo $IMAGE_VERSION; sed -n 's/.*osup\\.slot=\\([ab]\\).*/\\1/p' /proc/cmdline"
# Autostarted containers may still be starting: retried 15 times (podman exec alone takes
# seconds under TCG).
TALK = ("ok=; for i in $(seq 15); do podman exec client /bin/busybox wget -q -O - http://web/index.html "
        "&& { ok=1; break; }; sleep 2; done; [ -n \"$ok\" ]")


def timed(vm, command, timeout):
    """Runs COMMAND; returns (output, status, seconds of wall time)."""
    t0 = time.monotonic()
    out, rc = vm.run(command, timeout)
    return out, rc, round(time.monotonic() - t0, 1)


def boot(vm, timeout):
    vm.wait_for_login(timeout)
    # osup-apply.service waits for network-online and checks for /etc/osup/machine.json
    # only then: the boot must be done before the file is put there, or it applies too.
    vm.run("systemctl is-system-running --wait", timeout)
    vm.check(MOUNT)


def state_of(vm):
    return {
        "apps": vm.check(APPS),
        "containers": vm.check(CONTAINERS),
        "files": vm.check(FILES),
    }


def machine_checks(vm, label, expected=None):
    """The app runs, the containers talk by name; with EXPECTED, all equals it."""
    out, rc = vm.run(f"flatpak run {APP}", 300)
    check(f"{label}: the app runs its pinned commit", rc == 0 and "hello v1" in out, out)
    out, rc = vm.run(TALK, 900)
    if rc != 0:  # why, for the report
        out += vm.run("podman ps -a; systemctl status --no-pager -l osup-container-client; "
                      "journalctl -b --no-pager -u osup-container-client | tail -n 30", 300)[0]
    check(f"{label}: client reaches web by name", rc == 0 and "served by web" in out, out)
    out, rc = vm.run(PORT, 120)
    check(f"{label}: web answers on the published port 127.0.0.1:8080", rc == 0 and "served by web" in out, out)
    now = state_of(vm)
    if expected:
        for key in ("apps", "containers", "files"):
            check(f"{label}: {key} as on machine 1", now[key] == expected[key], f"{now[key]!r} != {expected[key]!r}")
    return now


def machine1(args, figures):
    step("machine 1: first boot of v1")
    with VM(args.machine1, extra_disks=[args.assets, args.backup], log_path=Path(args.log) / "console-machine1.log") as vm:
        boot(vm, args.timeout)
        vm.check(LOAD, 600)
        vm.check("install -m 0644 /run/osup-assets/machine.json /etc/osup/machine.json; "
                 "install -m 0600 /run/osup-assets/restic.pass /etc/osup/restic.pass; "
                 "mkdir -p /var/lib/web; echo 'served by web' >/var/lib/web/index.html")
        out, rc = vm.run("osup apply /etc/osup/machine.json --dry-run --json", 600)
        check("dry run plans 5 changes", rc == 0 and json.loads(out).get("changes") == 5, out)
        step("machine 1: osup apply")
        out, rc, secs = timed(vm, "osup --progress none apply /etc/osup/machine.json", 1800)
        figures["apply_machine1_s"] = secs
        check("osup apply installs app and containers", rc == 0 and "applied 5 change(s)" in out, out)
        out, rc = vm.run("osup apply /etc/osup/machine.json", 600)
        check("a second apply has nothing to do", rc == 0 and "nothing to do" in out, out)
        vm.check("mkdir -p /var/home/user/docs && echo 'my notes' >/var/home/user/docs/notes.txt && "
                 "head -c 4194304 /dev/urandom >/var/home/user/docs/blob.bin && "
                 "ln -sf docs/notes.txt /var/home/user/latest && chown -R 1000:1000 /var/home/user")
        expected = machine_checks(vm, "machine 1")
        step("machine 1: osup data backup")
        out, rc = vm.run("osup --progress none data backup --json", 1200)
        check("backup succeeds", rc == 0, out)
        if rc == 0:
            b = json.loads(out)
            figures.update(backup_s=b["seconds"], backup_files=b["files"], backup_bytes=b["bytes"], repo_added_bytes=b["added_bytes"])
        out = vm.check("osup export --json", 300)
        expected["export"] = json.loads(out)["machine"]
        if args.part == "all":
            switch_and_rollback(vm, args, expected, figures)
        vm.sendline("systemctl poweroff")
        vm.wait_exit(600)
    return expected


def switch_and_rollback(vm, args, expected, figures):
    step("machine 1: osup switch to v2, reboot")
    vm.check(f"osup --progress none switch /run/osup-assets/{args.v2_bundle}", 1800)
    vm.reboot(args.timeout)
    vm.check(MOUNT)
    out = vm.check(VERSION)
    check("v2 runs on slot b after the switch", out.split() == ["2.0.0", "b"], out)
    vm.run("systemctl is-system-running --wait", 900)  # osup-apply.service is done
    out, _ = vm.run("systemctl show -p ActiveState,Result osup-apply.service; journalctl -u osup-apply.service -b --no-pager | tail -n 5", 120)
    check("osup-apply.service ran at boot (the OS changed) with nothing to do", "Result=success" in out and "nothing to do" in out, out)
    # The stamp now holds v2: another start does not even look at podman or flatpak.
    out, rc = vm.run("osup --progress none apply --if-changed /etc/osup/machine.json", 300)
    check("apply --if-changed after that boot: unchanged, not applied again", rc == 0 and "as at the last apply" in out, out)
    machine_checks(vm, "after the switch", expected)
    step("machine 1: osup rollback, reboot")
    # The new slot is marked good before it is rolled back from.
    out, _ = vm.run("systemctl is-system-running --wait; osup state", 900)
    check("v2 marked good", out.strip().endswith("good"), out)
    vm.check("osup rollback", 300)
    vm.reboot(args.timeout)
    vm.check(MOUNT)
    out = vm.check(VERSION)
    check("v1 runs on slot a after the rollback", out.split() == ["1.0.0", "a"], out)
    vm.run("systemctl is-system-running --wait", 900)
    out, _ = vm.run("journalctl -u osup-apply.service -b --no-pager | tail -n 5", 120)
    check("osup-apply.service ran again after the rollback", "nothing to do" in out, out)
    machine_checks(vm, "after the rollback", expected)


def machine2(args, expected, figures):
    step("machine 2: a fresh disk from the same image, given the file")
    with VM(args.machine2, extra_disks=[args.assets, args.backup], log_path=Path(args.log) / "console-machine2.log") as vm:
        boot(vm, args.timeout)
        vm.check(LOAD, 600)
        vm.check("install -m 0644 /run/osup-assets/machine.json /etc/osup/machine.json; "
                 "install -m 0600 /run/osup-assets/restic.pass /etc/osup/restic.pass")
        out, rc, secs = timed(vm, "osup --progress none apply /etc/osup/machine.json", 1800)
        figures["apply_machine2_s"] = secs
        check("machine 2: osup apply", rc == 0 and "applied 5 change(s)" in out, out)
        t0 = time.monotonic()
        out, rc = vm.run("osup --progress none data restore --json", 1800)
        figures["restore_wall_s"] = round(time.monotonic() - t0, 1)
        check("machine 2: osup data restore", rc == 0, out)
        if rc == 0:
            r = json.loads(out)
            figures.update(restored_files=r["restored"], restored_bytes=r["bytes"])
        machine_checks(vm, "machine 2", expected)
        out = vm.check("cat /var/home/user/docs/notes.txt; stat -c %s /var/home/user/docs/blob.bin")
        check("machine 2: the user's files are back", out.split() == ["my", "notes", "4194304"], out)
        out = vm.check("osup export --json", 300)
        if expected:
            check("machine 2: osup export says what machine 1's said",
                  json.loads(out)["machine"] == expected["export"], out)
        vm.sendline("systemctl poweroff")
        vm.wait_exit(600)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("machine1")
    p.add_argument("machine2")
    p.add_argument("--assets", required=True)
    p.add_argument("--backup", required=True)
    p.add_argument("--part", default="all", choices=["restore", "all"])
    p.add_argument("--v2-bundle", default="machine-2.0.0-x86_64.osup")
    p.add_argument("--log", default=".")
    p.add_argument("--timeout", type=float, default=1500)
    # Machine 2 alone, from a backup disk machine 1 already filled (no comparison then).
    p.add_argument("--only-machine2", action="store_true")
    args = p.parse_args()
    figures = {}
    t0 = time.monotonic()
    try:
        expected = None if args.only_machine2 else machine1(args, figures)
        machine2(args, expected, figures)
    except VMError as e:
        check("the scenario ran to its end", False, str(e))
    figures["scenario_s"] = round(time.monotonic() - t0)
    print("figures: " + json.dumps(figures), flush=True)
    failed = sum(1 for _, ok in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
