"""The fleet part of update_scenario.py's step 2 (docs/fleet.md): the guest's
`osup update --reboot` needs one of its group's reboot slots, and the only one is held by
another machine (the host, through etcd, as a machine would hold it).

  - the update downloads, then says it is waiting and names the holder; it neither
    installs nor reboots while the slot is held, and etcd shows the guest `waiting`;
  - the host gives the slot back: the guest takes it, installs and reboots; when the new
    boot starts, the guest still holds the slot (its lease outlives the reboot);
  - once the new boot is marked good (after_mark_good): the slot is free again, etcd
    records the guest `good` for the release, and `osup fleet status --json` says so.
"""

import json
import time

from report import check

GROUP = "e2e"
OTHER = "e2e-other-machine"
SLOT = f"/osup/fleet/{GROUP}/slots/0"
OUT = "/var/lib/e2e-fleet"  # on the data partition: the update's output outlives its reboot
HOLD_S = 20  # how long the slot stays held after the guest said it waits


def config_lines(etcd_port):
    """update.conf lines that put the guest in a group of one reboot slot on the host's etcd."""
    return [
        "fleet = etcd",
        f"fleet_endpoints = http://10.0.2.2:{etcd_port}",
        f"fleet_group = {GROUP}",
        "fleet_slots = 1",
        "fleet_lease_ttl = 1800",  # outlives a slow reboot under TCG on a busy host
    ]


def _wait_for_line(vm, path, text, timeout):
    """Polls the guest's file PATH until it holds TEXT; returns its content."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out, _ = vm.run(f"cat {path} 2>/dev/null")
        if text in out:
            break
        time.sleep(5)
    return out


def update_through_slot(vm, g, etcd, version, boot_start, timeout):
    """Runs `osup update --json --reboot` in the guest while another machine holds the
    only reboot slot, then frees it; returns (machine id, the update's JSON or None, its
    stdout + stderr) once the new boot has a shell."""
    machine = vm.check("cat /etc/machine-id").strip()
    lease = etcd.hold(SLOT, OTHER, ttl=3600)
    vm.check(f"mkdir -p {OUT} && rm -f {OUT}/*")
    t0 = time.monotonic()
    vm.check(f"setsid -f osup update --json --reboot >{OUT}/out 2>{OUT}/err </dev/null")
    err = _wait_for_line(vm, f"{OUT}/err", "waiting for one", 1800)
    t_waiting = time.monotonic()
    print(f"the update said it waits after {t_waiting - t0:.0f} s (download included)", flush=True)
    check("the update waits for the reboot slot and names its holder",
          f"are taken (by {OTHER}); waiting for one" in err, err)
    records = etcd.prefix(f"/osup/fleet/{GROUP}/releases/{version}/")
    check(f"etcd records the guest waiting for {version}",
          records == {f"/osup/fleet/{GROUP}/releases/{version}/{machine}": "waiting"}, records)
    time.sleep(max(0.0, HOLD_S - (time.monotonic() - t_waiting)))
    st = g.status()
    running, _ = vm.run("pgrep -x osup >/dev/null && echo running")
    check(f"after {HOLD_S} s without the slot: still waiting, nothing installed, next boot a",
          running.strip() == "running" and st["next_boot"] == "a" and st["slots"]["b"]["state"] != "trying",
          (running, json.dumps(st)))

    vm.mark()
    etcd.revoke(lease)
    t_free = time.monotonic()
    vm.expect(boot_start, 1800 + timeout, "the reboot after the slot came free")
    held = etcd.prefix(f"/osup/fleet/{GROUP}/slots/")
    print(f"slot freed; the guest installed and rebooted {time.monotonic() - t_free:.0f} s later", flush=True)
    check("the slot came free: the guest took it and rebooted, and holds it as the new boot starts",
          held == {SLOT: machine}, held)
    vm.wait_for_login(timeout)
    j, _, out = g.run_json(f"cat {OUT}/out; cat {OUT}/err >&2")
    return machine, j, out


def after_mark_good(vm, etcd, machine, version):
    """The checks once the new boot was marked good."""
    now, _ = vm.run("cat /etc/machine-id")
    check("the machine id is the same after the reboot", now.strip() == machine, (machine, now))
    held = etcd.prefix(f"/osup/fleet/{GROUP}/slots/")
    check("mark-good gave the reboot slot back", held == {}, held)
    records = etcd.prefix(f"/osup/fleet/{GROUP}/releases/{version}/")
    check(f"etcd records the guest good on {version}",
          records == {f"/osup/fleet/{GROUP}/releases/{version}/{machine}": "good"}, records)
    out, rc = vm.run("osup fleet status --json")
    try:
        st = json.loads(out)
        release = st["releases"][version]
    except (ValueError, KeyError, TypeError):
        st, release = None, {}
    check("osup fleet status --json in the guest: no holder, 1 machine good",
          rc == 0 and st and st["holders"] == [] and release.get("good") == 1 and release.get("machines") == 1,
          out)
