#!/usr/bin/env python3
"""Drive an osup disk image under QEMU through its serial console (stdlib only).

    with VM("out/minimal.img", log_path="console.log") as vm:
        vm.wait_for_login()
        out, rc = vm.run("findmnt -n -o SOURCE /")
        vm.reboot()

The VM is started by qemu-tests/run-vm (one place for the QEMU command line); its serial
console is the child's stdin/stdout. Everything the console prints is kept in memory and,
with log_path, written to a file as it arrives. Every wait has a timeout and raises
VMTimeout naming what was awaited, with the console's last lines, so a hung boot fails a
test instead of hanging it. Commands are framed by markers that only appear in the
output (not in the echoed command line), so output and exit status are exact.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence, Union

RUN_VM = Path(__file__).resolve().parent.parent / "run-vm"

# What a booted image prints when it is ready for a login (getty or autologin shell).
LOGIN_PROMPT = re.compile(rb"login: *$", re.M)
SHELL_PROMPT = re.compile(rb"[#$] *$", re.M)
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]")

Pattern = Union[str, bytes, "re.Pattern[bytes]"]


_live = set()  # started VMs, killed on exit and on SIGTERM (e.g. from `timeout`)


def _kill_live(*_):
    for vm in list(_live):
        vm.stop(timeout=5)


def _on_sigterm(signum, frame):
    _kill_live()
    sys.exit(128 + signum)


atexit.register(_kill_live)


class VMError(Exception):
    """The VM did something a test did not expect (exited, failed a command)."""


class VMTimeout(VMError):
    """A wait on the console ran out of time."""


def _compile(pattern: Pattern) -> "re.Pattern[bytes]":
    if isinstance(pattern, re.Pattern):
        return pattern
    if isinstance(pattern, str):
        pattern = pattern.encode()
    return re.compile(pattern)


class VM:
    def __init__(
        self,
        image: Union[str, Path],
        arch: Optional[str] = None,
        extra_disks: Sequence[Union[str, Path]] = (),
        log_path: Optional[Union[str, Path]] = None,
        vars_path: Optional[Union[str, Path]] = None,
        memory_mib: Optional[int] = None,
        cpus: Optional[int] = None,
        run_vm: Union[str, Path] = RUN_VM,
        echo: bool = False,
        host_ports: Sequence[int] = (),
        log_writes: Optional[Union[str, Path]] = None,
        display: Optional[str] = None,
        monitor_socket: Optional[Union[str, Path]] = None,
        secure_boot: bool = False,
        net: bool = True,
    ) -> None:
        self.image = Path(image)
        self.arch = arch
        self.extra_disks = [Path(d) for d in extra_disks]
        self.log_path = Path(log_path) if log_path else None
        self.vars_path = Path(vars_path) if vars_path else None
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.run_vm = Path(run_vm)
        self.echo = echo  # copy the console to stderr as it arrives (debugging)
        self.host_ports = [int(p) for p in host_ports]  # host 127.0.0.1:P seen as 10.0.2.2:P
        self.log_writes = Path(log_writes) if log_writes else None  # run-vm --log-writes
        self.display = display  # "std" or "virtio": a graphics card, seen through screendump()
        self.monitor_socket = Path(monitor_socket) if monitor_socket else None
        self.secure_boot = secure_boot  # run-vm --secure-boot (firmware that enforces it)
        self.net = net  # False: run-vm --no-net (no network boot attempts in the firmware either)
        self._proc: Optional[subprocess.Popen] = None
        self._buf = bytearray()
        self._pos = 0  # where the next expect() starts looking
        self._cond = threading.Condition()
        self._reader: Optional[threading.Thread] = None
        self._log = None
        self._eof = False
        self._ids = itertools.count(1)

    # --- lifecycle -------------------------------------------------------------------
    def command(self) -> list:
        cmd = [str(self.run_vm), str(self.image)]
        if self.arch:
            cmd += ["--arch", self.arch]
        for d in self.extra_disks:
            cmd += ["--extra-disk", str(d)]
        if self.vars_path:
            cmd += ["--vars", str(self.vars_path)]
        if self.memory_mib:
            cmd += ["--memory", str(self.memory_mib)]
        if self.cpus:
            cmd += ["--cpus", str(self.cpus)]
        for port in self.host_ports:
            cmd += ["--host-port", str(port)]
        if self.log_writes:
            cmd += ["--log-writes", str(self.log_writes)]
        if self.display:
            cmd += ["--display", self.display]
        if self.monitor_socket:
            cmd += ["--monitor-socket", str(self.monitor_socket)]
        if self.secure_boot:
            cmd.append("--secure-boot")
        if not self.net:
            cmd.append("--no-net")
        return cmd

    def monitor(self, command: str, timeout: float = 60) -> str:
        """Runs a human-monitor command on the --monitor-socket; returns its output."""
        if not self.monitor_socket:
            raise VMError("the VM has no monitor socket; create it with monitor_socket=PATH")
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            while True:  # QEMU creates the socket a moment after it starts
                try:
                    sock.connect(str(self.monitor_socket))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline:
                        raise VMError(f"no QEMU monitor on {self.monitor_socket} within {timeout:.0f}s")
                    time.sleep(0.5)
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            out = bytearray()

            def until_prompt() -> None:
                while not out.endswith(b"(qemu) "):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise VMError(f"QEMU monitor closed during {command!r}")
                    out.extend(chunk)

            until_prompt()  # the banner
            out.clear()
            sock.sendall(command.encode() + b"\n")
            until_prompt()
        # The monitor echoes the command line with terminal escapes; keep what follows it.
        text = out.decode(errors="replace").replace("\r", "")
        return text.split("\n", 1)[1].rsplit("(qemu) ", 1)[0] if "\n" in text else ""

    def screendump(self, path: Union[str, Path]) -> Path:
        """Writes the guest's screen to path as PPM (the only format QEMU 7.2 writes
        everywhere) and returns the path."""
        path = Path(path).resolve()
        path.unlink(missing_ok=True)
        out = self.monitor(f"screendump {path}")
        if not path.is_file():
            raise VMError(f"screendump wrote no {path}: {out.strip()}")
        return path

    def start(self) -> "VM":
        if self._proc is not None:
            raise VMError("VM already started")
        if not self.image.is_file():
            raise VMError(f"disk image {self.image} does not exist; build it first")
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab", buffering=0)
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so stop() can kill QEMU with its wrapper
        )
        _live.add(self)
        # QEMU runs in its own session; without this a terminated driver would leave it behind.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            signal.signal(signal.SIGTERM, _on_sigterm)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return self

    def _read_loop(self) -> None:
        assert self._proc and self._proc.stdout
        fd = self._proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += chunk
                self._cond.notify_all()
            if self._log:
                self._log.write(chunk)
            if self.echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()

    def stop(self, timeout: float = 10) -> Optional[int]:
        """Kills QEMU (if still running) and returns its exit status."""
        if self._proc is None:
            return None
        _live.discard(self)
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._proc.wait()
        if self._reader:
            self._reader.join(5)
        if self._log:
            self._log.close()
            self._log = None
        return self._proc.returncode

    def wait_exit(self, timeout: float) -> int:
        """Waits for QEMU to exit on its own (the guest powered off)."""
        assert self._proc
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise VMTimeout(f"VM did not power off within {timeout:.0f}s\n{self.tail()}") from None

    def __enter__(self) -> "VM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- console -----------------------------------------------------------------------
    @property
    def console(self) -> str:
        """Everything the console printed so far (escape sequences removed)."""
        with self._cond:
            return ANSI.sub(b"", bytes(self._buf)).decode(errors="replace").replace("\r", "")

    def tail(self, lines: int = 25) -> str:
        text = self.console.rstrip("\n").split("\n")
        return "--- last console lines ---\n" + "\n".join(text[-lines:])

    def send(self, text: Union[str, bytes]) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise VMError(f"cannot type into the console: QEMU is not running\n{self.tail()}")
        data = text.encode() if isinstance(text, str) else text
        assert self._proc.stdin
        # The guest's UART has a small FIFO: feed slowly enough that TCG keeps up.
        for i in range(0, len(data), 16):
            self._proc.stdin.write(data[i : i + 16])
            self._proc.stdin.flush()
            time.sleep(0.01)

    def sendline(self, text: str) -> None:
        self.send(text + "\n")

    def mark(self) -> None:
        """Future expect() calls only look at output printed after this point."""
        with self._cond:
            self._pos = len(self._buf)

    def expect(self, patterns: Union[Pattern, Sequence[Pattern]], timeout: float, what: str = "") -> "re.Match[bytes]":
        """Waits until one of the patterns appears in new console output (escape
        sequences removed); returns the match and consumes the output up to its end."""
        if not isinstance(patterns, (list, tuple)):
            patterns = [patterns]
        compiled = [_compile(p) for p in patterns]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                raw = bytes(self._buf[self._pos :])
                text = ANSI.sub(b"", raw).replace(b"\r", b"")
                best = None
                for c in compiled:
                    m = c.search(text)
                    if m and (best is None or m.start() < best.start()):
                        best = m
                if best is not None:
                    # Consume up to the match: map the cleaned offset back to the raw buffer
                    # conservatively by searching the matched text's tail in the raw bytes.
                    self._pos += self._raw_offset(raw, best.end())
                    return best
                if self._eof:
                    raise VMError(
                        f"QEMU exited (status {self._proc.poll() if self._proc else None}) while waiting for "
                        f"{what or [c.pattern for c in compiled]}\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VMTimeout(
                        f"timed out after {timeout:.0f}s waiting for {what or [c.pattern for c in compiled]}\n{self.tail()}"
                    )
                self._cond.wait(min(left, 1.0))

    @staticmethod
    def _raw_offset(raw: bytes, clean_end: int) -> int:
        """Offset in raw bytes after which clean_end bytes of cleaned text were seen."""
        seen = 0
        i = 0
        while i < len(raw) and seen < clean_end:
            m = ANSI.match(raw, i)
            if m:
                i = m.end()
                continue
            if raw[i] != 0x0D:
                seen += 1
            i += 1
        return i

    # --- shell -------------------------------------------------------------------------
    def wait_for_login(self, timeout: float = 900, user: str = "root", password: str = "") -> None:
        """Waits for the booted system and gets a root shell on the console: answers a
        login prompt if there is one (autologin images have none), then makes sure the
        shell runs commands by round-tripping a marker."""
        deadline = time.monotonic() + timeout
        self.expect([LOGIN_PROMPT, SHELL_PROMPT], timeout, "a login prompt or a shell")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VMTimeout(f"no shell on the console within {timeout:.0f}s\n{self.tail()}")
            n = next(self._ids)
            self.mark()
            # printf's output differs from its echoed command line, so the echo never matches.
            self.sendline(f"printf '%s-%s\\n' OSUPREADY {n}")
            try:
                m = self.expect(
                    [rb"OSUPREADY-%d\n" % n, LOGIN_PROMPT, rb"Password: *$"], min(left, 20), "a shell"
                )
            except VMTimeout:
                # Typed ahead while login or the shell was still starting, a line may have
                # arrived garbled (an open quote leaves the shell waiting for more): Ctrl-C
                # drops it, so the next marker starts on a clean line.
                self.send(b"\x03")
                continue
            if m.group(0).startswith(b"OSUPREADY"):
                break
            if b"Password" in m.group(0):
                self.sendline(password)
            else:
                self.sendline(user)
            time.sleep(2)
        # A quiet, predictable shell: no kernel messages or wrapping in command output.
        self.run("stty -echo cols 500 2>/dev/null; export TERM=dumb PAGER=cat SYSTEMD_PAGER=cat "
                 "SYSTEMD_COLORS=0; dmesg -n 1 2>/dev/null; true", timeout=60)

    def run(self, command: str, timeout: float = 120) -> tuple:
        """Runs a shell command on the console; returns (output, exit status). The
        output is the command's stdout+stderr with \\r removed, trailing newline kept."""
        n = next(self._ids)
        self.mark()
        self.sendline(
            f"printf '%s-%s\\n' OSUPBEGIN {n}; {{ {command}\n}} 2>&1; printf '%s-%s:%s\\n' OSUPEND {n} $?"
        )
        m = self.expect(
            re.compile(rb"OSUPBEGIN-%d\n(.*?)OSUPEND-%d:(\d+)\n" % (n, n), re.S), timeout, f"command {command!r}"
        )
        return m.group(1).decode(errors="replace"), int(m.group(2))

    def check(self, command: str, timeout: float = 120) -> str:
        """run() that raises VMError naming the command when it exits non-zero."""
        out, rc = self.run(command, timeout)
        if rc != 0:
            raise VMError(f"command {command!r} failed with exit status {rc} in the VM:\n{out}")
        return out

    def reboot(self, timeout: float = 900) -> None:
        """Reboots the guest (QEMU keeps running) and waits for the next shell."""
        self.mark()
        self.sendline("systemctl reboot")
        # The firmware prints its banner / the kernel its version on every boot.
        self.expect([rb"Linux version \d", rb"BdsDxe: loading", rb"EFI stub: "], timeout, "the next boot to start")
        self.wait_for_login(timeout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Boot a disk image, log in on the serial console, run commands.")
    p.add_argument("image")
    p.add_argument("--arch")
    p.add_argument("--extra-disk", action="append", default=[])
    p.add_argument("--host-port", action="append", type=int, default=[],
                   help="the host's 127.0.0.1:PORT, seen by the guest as 10.0.2.2:PORT (repeatable)")
    p.add_argument("--serial-log")
    p.add_argument("--timeout", type=float, default=900, help="seconds for the boot to reach a shell")
    p.add_argument("--run", action="append", default=[], help="command to run (repeatable)")
    p.add_argument("--echo", action="store_true", help="copy the console to stderr")
    p.add_argument("--secure-boot", action="store_true", help="firmware that enforces Secure Boot (run-vm)")
    p.add_argument("--vars", help="keep the UEFI variable store in this file (run-vm --vars)")
    a = p.parse_args(argv)
    rc = 0
    with VM(a.image, arch=a.arch, extra_disks=a.extra_disk, log_path=a.serial_log, echo=a.echo,
            host_ports=a.host_port, secure_boot=a.secure_boot, vars_path=a.vars) as vm:
        vm.wait_for_login(a.timeout)
        for c in a.run:
            out, status = vm.run(c)
            sys.stdout.write(f"$ {c}\n{out}[exit {status}]\n")
            rc = rc or status
        vm.sendline("systemctl poweroff")
        vm.wait_exit(300)
    return rc


if __name__ == "__main__":
    sys.exit(main())
