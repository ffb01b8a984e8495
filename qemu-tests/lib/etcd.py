"""A real etcd for the QEMU scenarios (Debian's etcd-server): one member on 127.0.0.1 at a
free port, data under a directory of the caller's, spoken to through etcd's v3 JSON
gateway as osup itself does (docs/fleet.md). The scenario holds a reboot slot as another
machine would (a lease and a put that only succeeds while the key is absent) and reads
what the guest recorded.

    with Etcd(workdir) as etcd:          # etcd.port: the guest reaches it as 10.0.2.2:port
        lease = etcd.hold("/osup/fleet/g/slots/0", "other-machine", ttl=600)
        etcd.prefix("/osup/fleet/g/")    # {key: value}
        etcd.revoke(lease)               # the slot frees
"""

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ETCD = "/usr/bin/etcd"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text).decode()


def _prefix_end(prefix):
    """The range end that covers every key starting with PREFIX (last byte + 1)."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdError(Exception):
    pass


class Etcd:
    def __init__(self, workdir):
        if not Path(ETCD).exists():
            raise EtcdError(f"{ETCD} not found; install the Debian package etcd-server")
        self.dir = Path(workdir)
        self.port, self.peer_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.dir / "etcd.log", "wb") as log:
            self.proc = subprocess.Popen(
                [ETCD, "--name", "e2e", "--data-dir", str(self.dir / "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"e2e={peer}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdError(f"etcd exited with status {self.proc.returncode}; see {self.dir}/etcd.log")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.load(r).get("health") == "true":
                        return self
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        self.__exit__()
        raise EtcdError(f"etcd did not become healthy on {self.url} in 30 s; see {self.dir}/etcd.log")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, path, body):
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise EtcdError(f"etcd {path}: HTTP {e.code}: {e.read()[:200]!r}") from e

    def hold(self, key, value, ttl):
        """Puts KEY=VALUE with a new lease of TTL seconds, only while KEY is absent (as a
        machine takes a reboot slot); returns the lease id."""
        lease = self.call("/v3/lease/grant", {"TTL": ttl})["ID"]
        r = self.call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": lease}}]})
        if not r.get("succeeded"):
            raise EtcdError(f"{key} is taken already: {self.prefix(key)}")
        return lease

    def revoke(self, lease):
        """Ends the lease: its keys go with it."""
        self.call("/v3/lease/revoke", {"ID": lease})

    def prefix(self, prefix):
        """{key: value} of every key under PREFIX."""
        r = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in r.get("kvs", [])}
