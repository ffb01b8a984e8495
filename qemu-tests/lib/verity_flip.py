"""The dm-verity byte flip shared by the update and Secure Boot scenarios: one byte of a
file inside slot a's root partition changed from the host (VM off), then, in a boot of
that slot, reading the file is an I/O error, the kernel names the block and
`osup verify a` finds the same block."""

import json
import re
import subprocess
from pathlib import Path

from report import check
from vm import VMError

# A file the boot never reads (so corrupting it cannot stop the boot) and that we can find.
CANARY = "/usr/share/common-licenses/GPL-3"


def flip_byte_in_file(disk, path=CANARY):
    """Flips one byte of PATH's first data block inside root-a of DISK; returns its offset."""
    parts = json.loads(subprocess.check_output(["sfdisk", "--json", str(disk)]))["partitiontable"]
    sector = parts.get("sectorsize", 512)
    root_a = next(p for p in parts["partitions"] if p.get("name") == "root-a")
    start, size = root_a["start"] * sector, root_a["size"] * sector
    tmp = Path(disk).with_suffix(".root-a")
    subprocess.check_call(["dd", f"if={disk}", f"of={tmp}", "bs=1M", f"skip={start >> 20}",
                           f"count={size >> 20}", "status=none", "conv=sparse"])
    try:
        dump = subprocess.check_output(["dump.erofs", f"--path={path}", "-e", str(tmp)], text=True)
    finally:
        tmp.unlink()
    # "   0:        0..    7006 |    7006 :  294948864.. 294952960 |    4096"
    m = re.search(r"^\s*0:\s*\d+\.\.\s*\d+\s*\|\s*\d+\s*:\s*(\d+)\.\.", dump, re.M)
    if not m:
        raise VMError(f"dump.erofs found no extent for {path}:\n{dump}")
    offset = start + int(m.group(1)) + 100
    with open(disk, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    return offset


def check_flip_caught(vm, path=CANARY):
    """In a running boot of slot a (after flip_byte_in_file): the read fails, the kernel and
    `osup verify a` name the same corrupted block."""
    out, rc = vm.run(f"echo 3 > /proc/sys/vm/drop_caches; cat {path} > /dev/null")
    check("reading the changed file fails with an I/O error", rc != 0 and "Input/output error" in out, out)
    dmesg, _ = vm.run("dmesg | grep -i 'verity' | tail -n 3")
    check("dm-verity reports the corrupted block", "corrupted" in dmesg, dmesg)
    out, rc = vm.run("osup --progress none verify a 2>&1")
    kernel_block = re.search(r"data block (\d+) is corrupted", dmesg)
    check("osup verify a finds the same block as the kernel",
          rc != 0 and kernel_block and f"data block {kernel_block.group(1)} does not match" in out, out)
