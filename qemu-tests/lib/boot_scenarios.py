#!/usr/bin/env python3
"""Boot scenarios on a reference disk (qemu-tests/lib/mkref-disk --osup lib/osup-stub):

  1. first boot: root is erofs on dm-verity, /var the grown data partition, /etc the
     persistent overlay, the ESP automounted on /efi; health checks pass, then
     osup-mark-good runs `osup mark-good`;
  2. persistence: a file written to /etc and the machine ID survive a reboot;
  3. failing health check on a trial boot: `osup mark-bad` runs and the VM reboots.

    boot_scenarios.py DISK.img [--log DIR] [--arch A]

The disk is modified; pass a copy. Prints 'N passed, N failed' and exits non-zero on any
failure.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vm import VM, VMError  # noqa: E402

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + ("" if cond else f": {detail}"), flush=True)


def wait_unit(vm, unit, state, timeout=600):
    """Polls until `systemctl is-active unit` prints state (units run after login)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out, _ = vm.run(f"systemctl is-active {unit}")
        if out.strip() == state:
            return True
        time.sleep(5)
    return out.strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("image")
    p.add_argument("--log", default=".")
    p.add_argument("--arch")
    p.add_argument("--timeout", type=float, default=1500)
    a = p.parse_args()
    log = Path(a.log) / "boot_scenarios.console.log"
    with VM(a.image, arch=a.arch, log_path=log) as vm:
        vm.wait_for_login(a.timeout)
        mounts = {m: vm.run(f"findmnt -n -o SOURCE,FSTYPE --mountpoint {m}")[0].split() for m in ("/", "/var", "/etc")}
        check("root is erofs on /dev/mapper/root", mounts["/"] == ["/dev/mapper/root", "erofs"], mounts["/"])
        slaves = vm.run("ls /sys/block/$(basename $(readlink -f /dev/mapper/root))/slaves")[0].split()
        check("root device is dm-verity over root-a + root-a-verity", len(slaves) == 2, slaves)
        check("/var is the ext4 data partition", len(mounts["/var"]) == 2 and mounts["/var"][1] == "ext4", mounts["/var"])
        check("/etc is the overlay", mounts["/etc"] == ["osup-etc", "overlay"], mounts["/etc"])
        out, rc = vm.run("touch /usr/x 2>&1")
        check("root is read-only", rc != 0, out)
        out, rc = vm.run("ls /efi/loader/entries")
        check("ESP automounted on /efi", rc == 0 and "osup-a" in out, out)
        st = wait_unit(vm, "osup-mark-good.service", "active")
        check("osup-mark-good ran after health checks", st is True, st)
        stub = vm.run("grep -q Stand-in /usr/bin/osup")[1] == 0
        if stub:
            calls, _ = vm.run("cat /var/lib/osup/stub-calls")
            check("osup mark-good was called", "mark-good" in calls, calls)
        else:
            entries, _ = vm.run("ls /efi/loader/entries")
            check("osup mark-good removed the tries counter", entries.split() == ["osup-a.conf"], entries)
        vm.check("echo persisted > /etc/osup-persist-test")
        machine_id = vm.check("cat /etc/machine-id").strip()
        if not stub:  # a trial boot again: the real osup blessed the entry above
            vm.check("cd /efi/loader/entries && mv osup-a.conf osup-a+3.conf && sync")
        # Trial boot that fails once (the stub never renames the entry, so the loader still
        # counts); it sleeps first so the console can still be read before the reboot.
        vm.check("printf '#!/bin/sh\\n[ -e /var/lib/fail-once ] && exit 0\\ntouch /var/lib/fail-once\\nsleep 45\\necho broken on purpose\\nexit 1\\n' > /etc/osup/health.d/50-fail && "
                 "chmod +x /etc/osup/health.d/50-fail")

        vm.reboot(a.timeout)
        out, _ = vm.run("cat /etc/osup-persist-test; cat /etc/machine-id")
        check("/etc change and machine ID persist", out.split() == ["persisted", machine_id], out)
        try:
            vm.expect(rb"Linux version \d", a.timeout, "the reboot after the failed health check")
            rebooted = True
        except VMError as e:
            rebooted = str(e)
        check("failed health check on a trial boot reboots", rebooted is True, rebooted)
        vm.wait_for_login(a.timeout)
        record, _ = vm.run("cat /var/lib/osup/health-failures.log")
        check("the failure was recorded on /var", "50-fail" in record and "trial boot" in record, record)
        if stub:
            calls, _ = vm.run("cat /var/lib/osup/stub-calls")
            check("osup mark-bad was called", "mark-bad" in calls, calls)
        st = wait_unit(vm, "osup-mark-good.service", "active")
        check("the boot after the rollback reboot is marked good", st is True, st)
        vm.sendline("systemctl poweroff")
        vm.wait_exit(300)
    passed = sum(1 for _, ok in results if ok)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
