#!/usr/bin/env python3
"""An osup Secure Boot image under firmware that enforces Secure Boot (driven by
qemu-tests/secureboot; run-vm --secure-boot, the variable store kept in --vars):

  0. Secure Boot off: a disk of the same image signed but without `enroll` (--sb-off-disk),
     on firmware that does not enforce Secure Boot, an empty store: the signed UKI of slot
     a boots, the root is the dm-verity device, SecureBoot reads 0;
  1. first boot in setup mode (empty store): systemd-boot enrolls the image's PK, KEK and
     db from /loader/keys/auto (loader.conf `secure-boot-enroll force`) and resets; the
     firmware is then in user mode and boots the signed loader and slot a's signed UKI;
     in the guest `bootctl status` says Secure Boot is enabled (user), the command line is
     the UKI's (roothash=, osup.slot=a);
  2. v2 into slot b: with --channel-port, `osup update` from the channel the host serves
     (the full bundle: a UKI release has no delta; nginx's log shows the bundle fetched and
     no delta; `osup verify b` passes), else `osup switch` (bundle on /dev/vdb); reboot: v2
     boots on b under Secure Boot and is marked good; `osup rollback`, reboot: v1 on a;
  3. `osup switch` to v3 (failing health check), reboot: the health hook marks b bad and
     reboots, v1 on a comes back by itself;
  4. `osup switch` to v2 again (a trial slot b), power off; from the host, on the ESP: b's
     UKI with one byte changed, a copy re-signed with another db key and an unsigned copy
     (each with a higher generation than a and one try), and a Type #1 entry with another
     roothash= whose kernel is the UKI's own .linux (Debian-signed, not by our db). Boot:
     systemd-boot tries the three UKIs newest first, the firmware refuses each (one
     "Error loading ...: Access Denied" each; systemd-boot 252 then returns to the
     firmware, which starts it once more and then finds nothing else to boot; the test
     resets the machine as a person or a watchdog would), each try is counted, and then
     v1 boots on a; the Type #1 entry is never tried;
  5. (before step 4's boot, which then checks it; or in a boot of its own) one byte of a
     file in root-a changed from the host: reading it fails, dm-verity and `osup verify a`
     name the same block (lib/verity_flip.py, shared with the update scenario).

    secure_boot_scenario.py DISK --vars FILE --bundles B.img --v2-bundle NAME
                            --v3-bundle NAME --other-key DIR [--sb-off-disk DISK]
                            [--v2 VER --channel-port PORT --channel-log FILE] [--arch A]
                            [--log DIR] [--timeout S] [--steps 012345]

Prints one line per check, the time of each boot, and 'N passed, N failed'.
"""

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import check, results, step  # noqa: E402
from update_scenario import access_log_requests  # noqa: E402
from verity_flip import check_flip_caught, flip_byte_in_file  # noqa: E402
from vm import LOGIN_PROMPT, SHELL_PROMPT, VM, VMError  # noqa: E402

KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] .*(\n|$)", re.M)
LOAD_ERROR = re.compile(rb"Error loading (\S+): ([^\r\n]+)[\r\n]")
# Where OVMF/AAVMF end up when no boot option starts: its boot manager waits for a key.
STUCK = re.compile(rb"No bootable option or device was found|Shell> |Press ESC in \d+ seconds")
# Up to the end of the line: the console can deliver the path in pieces.
ENROLL = re.compile(rb"Enrolling secure boot keys from directory: (\S+)\n")


def esp_offset(disk):
    table = json.loads(subprocess.check_output(["sfdisk", "-J", str(disk)]))["partitiontable"]
    esp = next(p for p in table["partitions"] if p.get("name") == "esp")
    return esp["start"] * table.get("sectorsize", 512)


def pe_section(image, name):
    """A PE section's raw data (the host's objcopy does not read aarch64 PE images)."""
    pe = struct.unpack_from("<I", image, 0x3C)[0]
    count, opt_size = struct.unpack_from("<H", image, pe + 6)[0], struct.unpack_from("<H", image, pe + 20)[0]
    for i in range(count):
        h = pe + 24 + opt_size + 40 * i
        if image[h:h + 8].rstrip(b"\0") == name:
            vsize, _, rsize, roff = struct.unpack_from("<IIII", image, h + 8)
            return image[roff:roff + min(vsize, rsize)]
    raise ValueError(f"no {name.decode()} section in the UKI")


class Esp:
    """The disk image's ESP through mtools, from the host while the VM is off."""

    def __init__(self, disk):
        self.img = f"{disk}@@{esp_offset(disk)}"

    def mt(self, *args):
        return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout

    def ls(self, d):
        out = self.mt("mdir", "-b", "-i", self.img, "::" + d)
        return sorted(Path(x.strip()).name for x in out.splitlines() if x.strip())

    def get(self, path, host):
        self.mt("mcopy", "-n", "-i", self.img, "::" + path, str(host))

    def put(self, host, path):
        self.mt("mcopy", "-o", "-i", self.img, str(host), "::" + path)

    def rm(self, path):
        self.mt("mdel", "-i", self.img, "::" + path)

    def mkdir(self, d):
        subprocess.run(["mmd", "-i", self.img, "::" + d], capture_output=True)


class Guest:
    def __init__(self, vm, args):
        self.vm, self.args, self.timeout = vm, args, args.timeout

    def login(self, what):
        t0 = time.monotonic()
        self.vm.wait_for_login(self.timeout)
        print(f"     {what}: shell after {time.monotonic() - t0:.0f} s", flush=True)

    def sh(self, cmd, timeout=300, kernel_lines=False):
        """vm.run without the kernel messages that share the console: a soft-lockup
        warning under TCG on a busy host is KERN_EMERG and gets past `dmesg -n 1` (seen
        inside `osup state`'s answer). KERNEL_LINES keeps them, for reading dmesg."""
        out, rc = self.vm.run(cmd, timeout)
        return (out if kernel_lines else KERNEL_LINE.sub("", out)), rc

    def status(self):
        # Kernel messages on the console are not output; stderr stays out of the JSON.
        out, rc = self.sh("osup status --json 2>/dev/null")
        try:
            return json.loads(KERNEL_LINE.sub("", out))
        except ValueError:
            return {"unparsed": out}

    def mount_bundles(self):
        # The bundles disk is the second virtio disk, a bare ext4; the root is read-only.
        self.vm.check("mkdir -p /run/bundles && (mountpoint -q /run/bundles || mount -o ro /dev/vdb /run/bundles)")

    def cmdline(self):
        return self.sh("cat /proc/cmdline")[0].strip()

    def wait_good(self, slot):
        out, rc = self.sh(
            "for i in $(seq 300); do osup state | grep -qx good && break; sleep 2; done; osup state", 700
        )
        return check(f"slot {slot} marked good by its health check", out.strip() == "good", out)

    def reboot(self, what):
        t0 = time.monotonic()
        self.vm.reboot(self.timeout)
        print(f"     {what}: reboot took {time.monotonic() - t0:.0f} s", flush=True)


def check_booted(g, slot, hash_=None):
    cl = g.cmdline()
    check(f"booted slot {slot} (osup.slot={slot} on the UKI's command line)", f"osup.slot={slot}" in cl, cl)
    if hash_:
        check(f"root hash {hash_[:12]}... on the command line", f"roothash={hash_}" in cl, cl)
    # What `bootctl status` reports as "Secure Boot: enabled (user)" (the minimal image has no
    # bootctl): SecureBoot=1 with SetupMode, AuditMode and DeployedMode 0 or absent.
    mode, out = secure_boot_mode(g)
    check("firmware: Secure Boot enabled, user mode (SecureBoot=1 SetupMode=0)",
          mode.get("SecureBoot") == "1" and mode.get("SetupMode") == "0"
          and mode.get("AuditMode", "") in ("", "0") and mode.get("DeployedMode", "") in ("", "0"), out)
    check_uki_selected(g, slot)
    return cl


def secure_boot_mode(g):
    out, _ = g.sh("cd /sys/firmware/efi/efivars && for v in SecureBoot SetupMode AuditMode DeployedMode; do "
                  "printf '%s=%s\\n' $v \"$(od -An -tu1 -j4 $v-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | tr -d ' ')\"; done")
    return dict(x.split("=", 1) for x in out.split() if "=" in x), out


def check_uki_selected(g, slot):
    # The variable is read whole (tail cannot seek in efivarfs); 4 bytes of attributes first.
    out, _ = g.sh("cat /sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f | tail -c +5"
                  " | tr -d '\\000'; echo")
    check(f"systemd-boot booted a UKI of slot {slot}", re.fullmatch(rf"osup-\d+-{slot}(\+\d+(-\d+)?)?\.efi", out.strip()), out)


def step_enroll(g, vm):
    step("first boot in setup mode: systemd-boot enrolls the keys and resets")
    t0 = time.monotonic()
    m = vm.expect(ENROLL, g.timeout, "systemd-boot enrolling the keys")
    check("systemd-boot enrolls from \\loader\\keys\\auto", b"auto" in m.group(1), m.group(0))
    t1 = time.monotonic()
    vm.expect([rb"BdsDxe: loading", rb"EFI stub: "], 600, "the reset after enrollment")
    print(f"     enrollment after {t1 - t0:.0f} s; reset seen", flush=True)
    g.login("first boot, enrolled")
    print(f"     total to a shell: {time.monotonic() - t0:.0f} s", flush=True)
    check_booted(g, "a")
    out, _ = g.sh("dmesg | grep -i 'secure boot' | head -n 3", kernel_lines=True)
    check("the kernel reports Secure Boot enabled", re.search(r"[Ss]ecure boot enabled", out), out)
    out, _ = g.sh("findmnt -n -o SOURCE,FSTYPE /")
    check("the root is erofs on the dm-verity device", out.split()[:2] == ["/dev/mapper/root", "erofs"], out)
    g.wait_good("a")


def switch_to(g, bundle, what):
    g.mount_bundles()
    out, rc = g.sh(f"osup switch /run/bundles/{bundle}", 900)
    check(what, rc == 0, out)


def step_sb_off(args):
    step("Secure Boot off: a UKI image without `enroll` on plain firmware, empty variable store")
    t0 = time.monotonic()
    with VM(args.sb_off_disk, arch=args.arch, log_path=Path(args.log) / "console-sb-off.log", net=False) as vm:
        g = Guest(vm, args)
        g.login("Secure Boot off")
        cl = g.cmdline()
        check("booted slot a with the UKI's root hash (osup.slot=a roothash=)",
              "osup.slot=a" in cl and re.search(r"roothash=[0-9a-f]{64}", cl), cl)
        out, _ = g.sh("findmnt -n -o SOURCE,FSTYPE /")
        check("the root is erofs on the dm-verity device", out.split()[:2] == ["/dev/mapper/root", "erofs"], out)
        mode, out = secure_boot_mode(g)
        check("firmware: Secure Boot off (SecureBoot=0)", mode.get("SecureBoot") == "0", out)
        check_uki_selected(g, "a")
        vm.sendline("systemctl poweroff")
        vm.wait_exit(300)
    print(f"     Secure Boot off: {time.monotonic() - t0:.0f} s", flush=True)


def run_json(g, cmd, timeout):
    """(parsed stdout or None, exit status, stdout and stderr for the messages)."""
    out, rc = g.sh(f"{cmd} 2>/run/sb-stderr", timeout)
    err, _ = g.sh("cat /run/sb-stderr")
    try:
        return json.loads(KERNEL_LINE.sub("", out)), rc, out + err
    except ValueError:
        return None, rc, out + err


def update_from_channel(g):
    """`osup update` to v2 from the channel nginx serves: the full bundle (a UKI release has
    no delta), fetched once; the installed UKI verifies."""
    a = g.args
    g.vm.check(f"mkdir -p /etc/osup && echo 'channel = http://10.0.2.2:{a.channel_port}/' > /etc/osup/update.conf")
    j, rc, out = run_json(g, "osup update --check --json", 600)
    check("osup update --check offers v2 as the full bundle (no delta for a UKI release)",
          rc == 0 and j and j.get("available") == a.v2 and j.get("method") == "full", out)
    t0 = time.monotonic()
    j, rc, out = run_json(g, "osup update --json", 1800)
    check("osup update installs v2 into slot b from the full bundle",
          rc == 0 and j and j.get("installed") is True and j.get("method") == "full" and j.get("slot") == "b", out)
    print(f"     osup update: {time.monotonic() - t0:.0f} s", flush=True)
    gets = [(path, st) for method, path, st in access_log_requests(a.channel_log) if method == "GET"]
    check("nginx: the guest fetched the v2 bundle and no delta",
          any(path == f"/bundles/{a.v2_bundle}" and st in (200, 206) for path, st in gets)
          and not any(path.startswith("/deltas/") for path, _ in gets), gets)
    out, rc = g.sh("osup --progress none verify b 2>&1", 900)
    check("osup verify b: the installed UKI and root match the signed manifest", rc == 0, out)


def step_switch_rollback(g):
    step("v2 " + ("from the channel" if g.args.channel_port else "by switch")
         + ", boot it under Secure Boot, roll back")
    if g.args.channel_port:
        update_from_channel(g)
    else:
        switch_to(g, g.args.v2_bundle, "osup switch v2 (full bundle)")
    g.reboot("v2 on b")
    check_booted(g, "b")
    g.wait_good("b")
    out, rc = g.sh("osup rollback")
    check("osup rollback", rc == 0, out)
    g.reboot("rollback to a")
    check_booted(g, "a")
    g.wait_good("a")


def step_bad_update(g):
    step("switch to v3 (failing health check): the hook marks it bad, v1 comes back")
    switch_to(g, g.args.v3_bundle, "osup switch v3")
    t0 = time.monotonic()
    g.vm.mark()
    g.vm.sendline("systemctl reboot")
    # Only the hook's line: a login prompt can show up (even half-printed) before it.
    m = g.vm.expect(rb"osup: health check failed[^\n]*\n", g.timeout, "v3's health check to fail")
    check("v3's health check fails and the hook says it rolls back", b"rebooting into slot a" in m.group(0), m.group(0))
    # The shell of v3's boot is already up: wait for the hook's reboot before logging in.
    g.vm.expect([rb"BdsDxe: loading", rb"EFI stub: "], g.timeout, "the hook's reboot")
    g.vm.wait_for_login(g.timeout)
    print(f"     v3 trial and fallback: {time.monotonic() - t0:.0f} s", flush=True)
    check_booted(g, "a")
    st = g.status()
    check("osup status shows b bad", st.get("slots", {}).get("b", {}).get("state") == "bad", json.dumps(st))


def step_trial_for_tamper(g):
    step("switch to v2 again (a trial slot b for the tamper boot), power off")
    g.mount_bundles()
    out, rc = g.sh(f"osup switch /run/bundles/{g.args.v2_bundle}", 900)
    check("osup switch v2", rc == 0, out)
    g.vm.sendline("systemctl poweroff")
    g.vm.wait_exit(300)


def tamper(disk, other_key):
    """Returns the UKI file names in the order the loader must try (and refuse) them."""
    esp = Esp(disk)
    names = esp.ls("/EFI/Linux")
    trial = [n for n in names if re.fullmatch(r"(?i)osup-\d+-b\+3\.efi", n)]
    if not check("slot b's trial UKI is on the ESP", len(trial) == 1, names):
        return []
    gen = int(trial[0].split("-")[1])
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        esp.get(f"/EFI/Linux/{trial[0]}", t / "b.efi")
        data = bytearray((t / "b.efi").read_bytes())
        data[len(data) // 2] ^= 0x01  # inside .linux/.initrd: both are hashed
        (t / "flipped.efi").write_bytes(bytes(data))
        shutil.copy(t / "b.efi", t / "unsigned.efi")
        subprocess.run(["sbattach", "--remove", str(t / "unsigned.efi")], check=True, capture_output=True)
        subprocess.run(["sbsign", "--key", f"{other_key}/db.key", "--cert", f"{other_key}/db.crt",
                        "--output", str(t / "other.efi"), str(t / "unsigned.efi")], check=True, capture_output=True)
        (t / "vmlinuz").write_bytes(pe_section(bytes(data), b".linux"))
        order = [(f"osup-{gen + 2}-b+1.efi", "unsigned.efi"), (f"osup-{gen + 1}-b+1.efi", "other.efi"),
                 (f"osup-{gen}-b+1.efi", "flipped.efi")]
        esp.rm(f"/EFI/Linux/{trial[0]}")
        for name, f in order:
            esp.put(t / f, f"/EFI/Linux/{name}")
        esp.mkdir("/evil")
        esp.put(t / "vmlinuz", "/evil/vmlinuz")
        (t / "osup-z.conf").write_text("title evil\nsort-key osup\nversion 999\nlinux /evil/vmlinuz\n"
                                      f"options console=ttyS0,115200 ro roothash={'e' * 64} osup.slot=b\n")
        esp.mkdir("/loader/entries")  # a UKI disk has none
        esp.put(t / "osup-z.conf", "/loader/entries/osup-z.conf")
    print("     ESP now: " + " ".join(esp.ls("/EFI/Linux")) + " + /loader/entries/osup-z.conf", flush=True)
    return [n for n, _ in order]


def step_tamper_boot(args, vars_path, expected):
    step("tamper boot: three refused UKIs and a dropped Type #1 entry; must end on slot a"
         + (" (where the flipped byte must be caught)" if "5" in args.steps else ""))
    mon = Path(args.log) / "monitor.sock"
    t0 = time.monotonic()
    refused, resets = [], 0
    with VM(args.disk, arch=args.arch, log_path=Path(args.log) / "console-sb-tamper.log", vars_path=vars_path,
            secure_boot=True, net=False, monitor_socket=mon) as vm:
        g = Guest(vm, args)
        while True:
            m = vm.expect([LOAD_ERROR, STUCK, LOGIN_PROMPT, SHELL_PROMPT], args.timeout, "a refused UKI, the firmware's menu, or a login")
            if m.re is LOAD_ERROR:
                refused.append((m.group(1).decode(), m.group(2).decode().strip()))
                print(f"     {time.monotonic() - t0:.0f} s: {m.group(0).decode().strip()}", flush=True)
            elif m.re is STUCK:
                if resets >= 6:
                    check("fewer than 7 resets", False, vm.tail())
                    return
                resets += 1
                print(f"     {time.monotonic() - t0:.0f} s: firmware found nothing to boot ({m.group(0).decode()!r}); "
                      f"reset {resets}", flush=True)
                vm.monitor("system_reset")
            else:
                break
        vm.sendline("")  # the prompt just seen is consumed: ask for a fresh one
        g.login("tamper boot, after the refusals")
        print(f"     tamper boot: shell after {time.monotonic() - t0:.0f} s, {resets} resets", flush=True)
        # The loader counts the try (renames the file) before it asks the firmware to load it.
        files = [Path(f.replace("\\", "/")).name.lower().split("+")[0] for f, _ in refused]
        check("each tampered UKI was refused once, newest first", files == [e.split("+")[0] for e in expected], refused)
        check("refused by the firmware's signature check",
              all(r in ("Security Violation", "Access Denied") for _, r in refused), refused)
        check("the dropped Type #1 entry was never loaded", "evil" not in vm.console, "")
        check_booted(g, "a")
        out, _ = g.sh("ls /efi/EFI/Linux /efi/loader/entries")
        check("the tampered UKIs are counted out (+0-1)", out.count("+0-1.efi") == 3, out)
        out, _ = g.sh("bootctl list 2>/dev/null | grep -iE 'title|id:' ")
        print("     bootctl list:\n" + "\n".join("       " + x for x in out.splitlines()), flush=True)
        if "5" in args.steps:
            check_flip_caught(vm)


def flip_root_a_byte(disk):
    step("dm-verity: one byte of a file in slot a's root changed from the host")
    print(f"     flipped the byte at disk offset {flip_byte_in_file(disk)}", flush=True)


def step_verity_alone(args, vars_path):
    """Step 5 without step 4: a boot of its own."""
    with VM(args.disk, arch=args.arch, log_path=Path(args.log) / "console-sb-verity.log", vars_path=vars_path,
            secure_boot=True, net=False) as vm:
        g = Guest(vm, args)
        g.login("verity boot")
        check_booted(g, "a")
        check_flip_caught(vm)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("disk")
    p.add_argument("--vars", required=True)
    p.add_argument("--bundles", required=True)
    p.add_argument("--v2-bundle", required=True)
    p.add_argument("--v3-bundle", required=True)
    p.add_argument("--other-key", required=True)
    p.add_argument("--sb-off-disk", help="step 0: a UKI disk built without `enroll`, booted with Secure Boot off")
    p.add_argument("--v2", help="v2's version (step 2 from the channel)")
    p.add_argument("--channel-port", type=int, help="step 2 from the channel served on the host's 127.0.0.1:PORT")
    p.add_argument("--channel-log", help="that server's access log (nginx's format)")
    p.add_argument("--arch")
    p.add_argument("--log", default=".")
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--steps", default="012345")
    args = p.parse_args()
    if "0" in args.steps and not args.sb_off_disk:
        p.error("step 0 needs --sb-off-disk")
    if args.channel_port and not (args.v2 and args.channel_log):
        p.error("--channel-port needs --v2 and --channel-log")
    vars_path = Path(args.vars)
    if "1" in args.steps:
        vars_path.unlink(missing_ok=True)  # an empty store: setup mode
    try:
        if "0" in args.steps:
            step_sb_off(args)
        if any(c in args.steps for c in "1234"):
            run_main_boot(args, vars_path)
        if "5" in args.steps:
            flip_root_a_byte(args.disk)
        if "4" in args.steps:
            step_tamper_boot(args, vars_path, tamper(args.disk, args.other_key))
        elif "5" in args.steps:
            step_verity_alone(args, vars_path)
    except VMError as e:
        check("the scenario ran to its end", False, str(e))
    failed = sum(1 for _, ok in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def run_main_boot(args, vars_path):
    """Steps 1-3 in one VM (the network only for step 2 from the channel), then the trial
    switch for step 4 or a power off."""
    ports = [args.channel_port] if args.channel_port else []
    with VM(args.disk, arch=args.arch, extra_disks=[args.bundles], log_path=Path(args.log) / "console-sb.log",
            vars_path=vars_path, secure_boot=True, net=bool(ports), host_ports=ports) as vm:
        g = Guest(vm, args)
        if "1" in args.steps:
            step_enroll(g, vm)
        else:
            g.login("boot")
            print(f"     booted: {g.cmdline()}\n     status: {json.dumps(g.status())}", flush=True)
        if "2" in args.steps:
            step_switch_rollback(g)
        if "3" in args.steps:
            step_bad_update(g)
        if "4" in args.steps:
            step_trial_for_tamper(g)
        else:
            vm.sendline("systemctl poweroff")
            vm.wait_exit(300)


if __name__ == "__main__":
    sys.exit(main())
