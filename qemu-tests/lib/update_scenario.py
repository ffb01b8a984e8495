#!/usr/bin/env python3
"""The end-to-end update scenario of an osup image under QEMU (driven by qemu-tests/e2e):

  1. v1 boots on slot a and is marked good; write a file under /home, one under /var/lib
     and a change to /etc; the update timer is enabled, its service skips (timer off);
  2. network update to v2: /etc/osup/update.conf names the channel on the host
     (http://10.0.2.2:PORT/), `osup update --check --json` offers v2 as a delta of under
     5 % of the v2 bundle, `osup update --json` installs it into slot b; nginx's access
     log shows the delta fetched and the full bundle not; reboot: v2 runs on slot b, is
     marked good, and the files are all there. With --fleet-etcd, update.conf also puts
     the guest in a fleet of one reboot slot on an etcd the host runs, the host holds
     that slot as another machine, and `osup update --json --reboot` must wait for it
     (lib/fleet_step.py);
  3. `osup rollback`, reboot: v1 runs on slot a again, files still there;
  4. `osup switch` to v3 (bundle on a second virtio disk; replaces v2 on slot b; carries
     a failing health check), reboot:
     v3 fails its health check and, without help, the machine ends up running v1 on slot
     a within the tries; `osup status` shows b bad; `osup rollback` refuses;
  5. while v1 runs, flip one byte of a file inside slot a's root partition from the host:
     reading that file fails (dm-verity) instead of returning changed bytes, and
     `osup verify a` names the block the kernel reported.

    update_scenario.py DISK --bundles BUNDLES.img --v1 VER --v2 VER --v3 VER --v3-bundle NAME
                       --channel DIR --channel-port PORT --channel-log FILE
                       [--fleet-etcd DIR] [--arch A] [--log DIR] [--timeout S]

BUNDLES.img is a file system image (no partition table) holding the v3 bundle; the guest
sees it as /dev/vdb. DIR is the channel directory (osup-build publish) that an HTTP
server on the host's 127.0.0.1:PORT serves, writing its access log to FILE (lines with
the request in double quotes, then status and bytes, as nginx's default formats); the
guest reaches it as 10.0.2.2:PORT. --fleet-etcd DIR starts etcd (etcd-server) on a free
port of the host's 127.0.0.1 with its data in DIR; the guest reaches it the same way.
Prints one line per check and 'N passed, N failed'; exits non-zero on any failure.
"""

import argparse
import contextlib
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet_step  # noqa: E402
from etcd import Etcd, EtcdError  # noqa: E402
from report import check, results, step  # noqa: E402
from verity_flip import CANARY, check_flip_caught, flip_byte_in_file  # noqa: E402
from vm import VM, VMError  # noqa: E402

BOOT_START = [rb"Linux version \d", rb"BdsDxe: loading", rb"EFI stub: "]
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] .*(\n|$)", re.M)



class Guest:
    def __init__(self, vm, timeout):
        self.vm, self.timeout = vm, timeout

    def slot(self):
        out, _ = self.vm.run("sed -n 's/.*osup\\.slot=\\([ab]\\).*/\\1/p' /proc/cmdline")
        return out.strip()

    def version(self):
        out, _ = self.vm.run(". /etc/os-release; echo $IMAGE_VERSION")
        return out.strip()

    def status(self):
        out = self.vm.check("osup status --json")
        return json.loads(out)

    def wait_unit(self, unit, states=("active",), timeout=900):
        """Polls `systemctl is-active` until the unit reaches one of STATES; returns the last state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.vm.run(f"systemctl is-active {unit}")[0].strip()
            if state in states:
                break
            time.sleep(5)
        return state

    def reboot(self):
        self.vm.reboot(self.timeout)

    def run_json(self, command, timeout=120):
        """Runs COMMAND with stdout kept apart from stderr; returns (parsed stdout or None,
        exit status, stdout + stderr for messages)."""
        out, rc = self.vm.run(f"{{ {command}\n}} 2>/run/e2e-stderr; s=$?; echo; echo OSUP-STDERR; "
                              "cat /run/e2e-stderr; (exit $s)", timeout=timeout)
        # The serial console also carries kernel messages that get past `dmesg -n 1` (a
        # soft-lockup warning under TCG on a busy host is KERN_EMERG); they are not output.
        stdout = KERNEL_LINE.sub("", out.partition("\nOSUP-STDERR\n")[0])
        try:
            return json.loads(stdout), rc, out
        except ValueError:
            return None, rc, out

    def mount_bundles(self):
        # The bundles disk is the second virtio disk; it has no partition table.
        self.vm.check("mkdir -p /run/bundles && (mountpoint -q /run/bundles || mount -o ro /dev/vdb /run/bundles)")

    def files_intact(self, tag):
        out, rc = self.vm.run(
            "cat /home/e2e/notes.txt /var/lib/e2e/state.txt /etc/e2e.conf; grep -c e2e-host /etc/hosts"
        )
        check(f"{tag}: /home, /var/lib and /etc changes are all there",
              rc == 0 and out.split() == ["home-data", "var-data", "etc-change", "1"], out)


def slot_state(status, slot):
    return status["slots"][slot]["state"]


def access_log_requests(path):
    """(method, path, status) of every request in an nginx access log."""
    requests = []
    for line in Path(path).read_text(errors="replace").splitlines():
        m = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', line)
        if m:
            requests.append((m.group(1), m.group(2).split("?")[0], int(m.group(3))))
    return requests


def main():
    p = argparse.ArgumentParser()
    p.add_argument("disk")
    p.add_argument("--bundles", required=True)
    p.add_argument("--v1", required=True)
    p.add_argument("--v2", required=True)
    p.add_argument("--v3", required=True)
    p.add_argument("--v3-bundle", required=True, help="file name of v3's bundle on the bundles disk")
    p.add_argument("--channel", help="the channel directory on the host (osup-build publish --channel)")
    p.add_argument("--channel-port", type=int, help="port of the host's 127.0.0.1 where the channel is served")
    p.add_argument("--channel-log", help="the HTTP server's access log")
    p.add_argument("--fleet-etcd", metavar="DIR",
                   help="run step 2 in a fleet: etcd on the host with its data in DIR (lib/fleet_step.py)")
    p.add_argument("--arch")
    p.add_argument("--log", default=".")
    p.add_argument("--timeout", type=float, default=1200, help="seconds for one boot to reach a shell")
    p.add_argument("--verity-only", action="store_true", help="run step 5 alone (on a disk after step 4)")
    a = p.parse_args()
    if not a.verity_only and not (a.channel and a.channel_port and a.channel_log):
        p.error("--channel, --channel-port and --channel-log are needed (all but --verity-only)")
    log = Path(a.log)
    bundle = {a.v3: "/run/bundles/" + a.v3_bundle}

    start = time.monotonic()
    if a.verity_only:
        verity_step(a, log)
    else:
        update_steps(a, bundle, log)
    passed = sum(1 for _, ok in results if ok)
    print(f"{passed} passed, {len(results) - passed} failed ({time.monotonic() - start:.0f} s in QEMU)")
    return 0 if passed == len(results) else 1


def update_steps(a, bundle, log):
    """Steps 1-5: upgrade, rollback, a bad update that rolls back by itself, dm-verity."""
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(Etcd(a.fleet_etcd)) if a.fleet_etcd else None
        ports = [a.channel_port] + ([etcd.port] if etcd else [])
        vm = stack.enter_context(VM(a.disk, arch=a.arch, extra_disks=[a.bundles], log_path=log / "console-1.log",
                                    host_ports=ports))
        first_boot(a, vm)
        network_update(a, vm, etcd)
        rollbacks(a, vm, bundle)
        verity_check(a, vm)
        vm.sendline("systemctl poweroff")
        vm.wait_exit(600)


def first_boot(a, vm):
    """Step 1."""
    g = Guest(vm, a.timeout)
    step(f"(1) boot v{a.v1}")
    vm.wait_for_login(a.timeout)
    check("v1 boots on slot a", (g.slot(), g.version()) == ("a", a.v1), (g.slot(), g.version()))
    out, _ = vm.run("findmnt -n -o SOURCE,FSTYPE,OPTIONS /")
    fields = out.split()
    check("root is erofs on dm-verity, read-only",
          fields[:2] == ["/dev/mapper/root", "erofs"] and "ro" in fields[2].split(","), out)
    state = g.wait_unit("osup-mark-good.service")
    check("v1 is marked good after its health checks", state == "active", state)
    vm.check("mkdir -p /home/e2e /var/lib/e2e && echo home-data > /home/e2e/notes.txt && "
             "echo var-data > /var/lib/e2e/state.txt && echo etc-change > /etc/e2e.conf && "
             "echo '10.0.2.99 e2e-host' >> /etc/hosts && sync")

    out, _ = vm.run("systemctl is-enabled osup-update.timer; systemctl is-active osup-update.timer")
    check("osup-update.timer is enabled and waiting", out.split() == ["enabled", "active"], out)


def network_update(a, vm, etcd):
    """Step 2; with etcd, through a reboot slot another machine holds first."""
    g = Guest(vm, a.timeout)
    step(f"(2) update to v{a.v2} from the channel" + (" in a fleet of one reboot slot" if etcd else ""))
    conf = [f"channel = http://10.0.2.2:{a.channel_port}/"] + (fleet_step.config_lines(etcd.port) if etcd else [])
    vm.check("mkdir -p /etc/osup && printf '%s\\n' " + " ".join(f"'{line}'" for line in conf)
             + " > /etc/osup/update.conf")
    # The timer's service skips unless update.conf says `timer = on`; it has no such line.
    out, _ = vm.run("systemctl start osup-update.service; echo start=$?; "
                    "systemctl show -p Result --value osup-update.service", timeout=300)
    check("osup-update.service skips without 'timer = on'", out.split() == ["start=0", "exec-condition"], out)
    name, arch = "minimal", a.arch or "x86_64"
    v2_bundle = Path(a.channel) / "bundles" / f"{name}-{a.v2}-{arch}.osup"
    delta = Path(a.channel) / "deltas" / f"{name}-{a.v1}-to-{a.v2}-{arch}.osupd"
    check("the channel holds the v2 bundle and a delta from v1", v2_bundle.is_file() and delta.is_file(),
          sorted(str(f.relative_to(a.channel)) for f in Path(a.channel).rglob("*") if f.is_file()))
    bundle_bytes = v2_bundle.stat().st_size if v2_bundle.is_file() else 0
    j, rc, out = g.run_json("osup update --check --json", timeout=600)
    check("osup update --check offers v2 as a delta from v1",
          rc == 0 and j and j.get("current") == a.v1 and j.get("available") == a.v2 and j.get("method") == "delta"
          and not j.get("installed"), out)
    dl = j.get("download_bytes") if j else None
    check(f"the download is under 5 % of the v2 bundle ({bundle_bytes} bytes)",
          isinstance(dl, int) and 0 < dl < 0.05 * bundle_bytes, f"download_bytes {dl}")
    if isinstance(dl, int) and bundle_bytes:
        print(f"download {dl} bytes = {100.0 * dl / bundle_bytes:.2f} % of the v2 bundle", flush=True)
    machine = None
    if etcd:
        machine, j, out = fleet_step.update_through_slot(vm, g, etcd, a.v2, BOOT_START, a.timeout)
        rc = 0 if j else 1
    else:
        j, rc, out = g.run_json("osup update --json", timeout=1800)
    check("osup update installs v2 into slot b from the delta",
          rc == 0 and j and j.get("installed") is True and j.get("method") == "delta" and j.get("slot") == "b"
          and j.get("available") == a.v2, out)
    requests = access_log_requests(a.channel_log)
    gets = [(path, status) for method, path, status in requests if method == "GET"]
    delta_url = f"/deltas/{delta.name}"
    check("the guest fetched the channel index and the delta",
          any(path == "/index.json" and status in (200, 304) for path, status in gets)
          and any(path == delta_url and status in (200, 206) for path, status in gets), requests)
    check("the guest did not fetch the full v2 bundle",
          not any(path == f"/bundles/{v2_bundle.name}" for path, status in gets), requests)
    if not etcd:  # with --reboot (the fleet), the update rebooted by itself
        st = g.status()
        check("status: b trying, next boot b", slot_state(st, "b") == "trying" and st["next_boot"] == "b",
              json.dumps(st))
        g.reboot()
    check("v2 runs on slot b", (g.slot(), g.version()) == ("b", a.v2), (g.slot(), g.version()))
    state = g.wait_unit("osup-mark-good.service")
    check("v2 is marked good", state == "active" and slot_state(g.status(), "b") == "good", state)
    if etcd:
        fleet_step.after_mark_good(vm, etcd, machine, a.v2)
    g.files_intact("after the upgrade")


def rollbacks(a, vm, bundle):
    """Steps 3 and 4."""
    g = Guest(vm, a.timeout)
    step("(3) rollback to v1")
    out, rc = vm.run("osup rollback")
    check("osup rollback succeeds", rc == 0, out)
    g.reboot()
    check("v1 runs on slot a after the rollback", (g.slot(), g.version()) == ("a", a.v1),
          (g.slot(), g.version()))
    # Let the boot settle (its mark-good) before the next switch, as a person would.
    state = g.wait_unit("osup-mark-good.service")
    check("v1 is good again after the rollback", state == "active" and slot_state(g.status(), "a") == "good",
          state)
    g.files_intact("after the rollback")

    step(f"(4) switch to v{a.v3} (fails its health check)")
    g.mount_bundles()
    out, rc = vm.run(f"osup switch {bundle[a.v3]}", timeout=1800)
    check("osup switch v3 succeeds", rc == 0, out)
    vm.mark()
    vm.sendline("systemctl reboot")
    # v3 boots, its health check fails, osup marks it bad and reboots: at most `tries`
    # boots of slot b, then slot a must be running without anyone touching the console.
    seen = []
    for _ in range(5):
        vm.expect(BOOT_START, a.timeout, "the next boot")
        vm.wait_for_login(a.timeout)
        try:
            seen.append((g.slot(), g.version()))
        except VMError:
            continue  # it rebooted under us
        if seen[-1][0] == "a":
            break
        vm.mark()
    # Logging in to v3 can lose the race with its reboot; the failure record below shows it ran.
    check("the machine went back to v1 on slot a by itself", seen and seen[-1] == ("a", a.v1), seen)
    out, _ = vm.run("cat /var/lib/osup/health-failures.log")
    check("the failed health check of slot b is recorded", "slot b" in out and "90-e2e-always-fails" in out, out)
    st = g.status()
    check("status: slot b is bad, slot a booted", slot_state(st, "b") == "bad" and st["booted"] == "a",
          json.dumps(st))
    out, rc = vm.run("osup rollback")
    check("osup rollback refuses a bad slot with a clear message", rc != 0 and "bad" in out, out)
    g.files_intact("after the automatic rollback")


def verity_check(a, vm):
    """Step 5, in the running v1: a byte changed under the mounted root is an I/O error,
    never wrong data. The host changes the disk image under the running VM (QEMU reads
    it through the host's page cache, so the guest sees the change once it drops its own
    cache): no boot of its own, which saves one of the CI's slowest steps on aarch64."""
    step(f"(5) flip a byte of {CANARY} in root-a under the running v1")
    offset = flip_byte_in_file(a.disk, CANARY)
    print(f"flipped the byte at disk offset {offset}", flush=True)
    check_flip_caught(vm)


def verity_step(a, log):
    """Step 5 alone (--verity-only): boot the disk after step 4, then verity_check."""
    with VM(a.disk, arch=a.arch, log_path=log / "console-2.log") as vm:
        g = Guest(vm, a.timeout)
        vm.wait_for_login(a.timeout)
        check("v1 boots on slot a", (g.slot(), g.version()) == ("a", a.v1), (g.slot(), g.version()))
        verity_check(a, vm)
        vm.sendline("systemctl poweroff")
        vm.wait_exit(600)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (VMError, EtcdError) as e:
        print(f"FAIL the scenario stopped: {e}", file=sys.stderr)
        sys.exit(1)
