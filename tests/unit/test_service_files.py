"""The service definitions: systemd unit (+ sysusers/tmpfiles), launchd plist, Dockerfile.

Tools from Debian's `systemd` package (systemd-analyze, systemd-sysusers,
systemd-tmpfiles) check the systemd files for real. Where one is missing the test
skips on a developer machine and fails in CI (CI=true), where it must be installed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import plistlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "triplicate.service"
SYSUSERS = REPO / "systemd" / "triplicate.sysusers"
TMPFILES = REPO / "systemd" / "triplicate.tmpfiles"
PLIST = REPO / "launchd" / "com.triplicate.daemon.plist"
LAUNCHD_README = REPO / "launchd" / "README.md"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

CONFIG_LINUX = "/etc/triplicate/triplicate.toml"
CONFIG_MAC = "/usr/local/etc/triplicate/triplicate.toml"
STATE_DIR = "/var/lib/triplicate"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, package: str = "systemd") -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found: install Debian package '{package}'"
        if IN_CI:
            pytest.fail(msg + " (CI=true: a missing tool is a failure)")
        pytest.skip(msg)
    return path


# ---------------------------------------------------------------- systemd unit


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section], Key=Value, repeated keys accumulate,
    '#'/';' comments, backslash continues a line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1]
            assert name not in sections, f"line {lineno}: section [{name}] twice"
            current = sections[name] = {}
            continue
        assert current is not None, f"line {lineno}: key outside a section: {raw!r}"
        assert "=" in line, f"line {lineno}: not Key=Value: {raw!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        current.setdefault(key, []).append(value)
    assert not pending, "file ends in a line continuation"
    return sections


def seconds(span: str) -> float:
    """A systemd time span ('120', '90s', '2min 30s') in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
             "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600,
             "hour": 3600, "hours": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span.strip())
    assert parts and "".join(f"{n}{u}" for n, u in parts) == span.replace(" ", ""), span
    return sum(float(n) * units[u] for n, u in parts)


def yes(value: str) -> bool:
    return value.lower() in {"yes", "true", "on", "1"}


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times: {values}"
    return values[0]


def test_unit_sections(unit):
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit, "Unit", "Wants").split()
    assert "network-online.target" in one(unit, "Unit", "After").split()


def test_unit_runs_the_daemon_after_checking_the_config(unit):
    assert one(unit, "Service", "Type") == "notify"
    start = shlex.split(one(unit, "Service", "ExecStart"))
    pre = shlex.split(one(unit, "Service", "ExecStartPre"))
    assert start[0].startswith("/") and start[0].endswith("/triplicate")
    assert start[1:] == ["--config", CONFIG_LINUX, "run"]
    assert pre == [start[0], "check-config", CONFIG_LINUX]


def test_unit_identity_restart_and_stop(unit):
    assert one(unit, "Service", "User") == "triplicate"
    assert one(unit, "Service", "Group") == "triplicate"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert 1 <= seconds(one(unit, "Service", "RestartSec")) <= 60
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    # Long enough for transfers to finish or park, short enough not to stall a reboot.
    assert 60 <= seconds(one(unit, "Service", "TimeoutStopSec")) <= 300
    assert one(unit, "Service", "KillMode") == "mixed"
    # Exit status 2 is a config error (check-config's): restarting cannot fix it.
    assert "2" in one(unit, "Service", "RestartPreventExitStatus").split()


def test_unit_readiness_watchdog_and_reload(unit):
    # Type=notify: started means READY=1 from the daemon's own process (not a helper).
    assert one(unit, "Service", "NotifyAccess") == "main"
    # The daemon pings from its event loop every WatchdogSec/2: a hung loop gets restarted
    # (Restart=on-failure covers a watchdog timeout).
    assert 10 <= seconds(one(unit, "Service", "WatchdogSec")) <= 300
    assert one(unit, "Service", "Restart") in ("on-failure", "on-watchdog", "on-abnormal", "always")
    # READY=1 comes after the first scan of the watch folders, which can be slow.
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= 120
    reload = shlex.split(one(unit, "Service", "ExecReload"))
    assert reload[0].endswith("/kill") and reload[1:] == ["-HUP", "$MAINPID"]
    # sd_notify is a datagram on a unix socket.
    assert "AF_UNIX" in one(unit, "Service", "RestrictAddressFamilies").split()


def test_unit_state_logs_environment(unit):
    assert one(unit, "Service", "StateDirectory") == "triplicate"
    assert one(unit, "Service", "WorkingDirectory") == STATE_DIR
    assert one(unit, "Service", "StandardOutput") == "journal"
    assert one(unit, "Service", "StandardError") == "journal"
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/triplicate/env"
    env = " ".join(unit["Service"].get("Environment", []))
    assert "PYTHONUNBUFFERED=1" in shlex.split(env), "journal lines would sit in a buffer"
    assert one(unit, "Service", "UMask") == "0027"
    assert int(one(unit, "Service", "LimitNOFILE")) >= 65536


@pytest.mark.parametrize("key,expected", [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "read-only"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectControlGroups", "yes"),
    ("LockPersonality", "yes"),
    ("SystemCallArchitectures", "native"),
])
def test_unit_hardening(unit, key, expected):
    value = one(unit, "Service", key)
    assert value == expected or (expected == "yes" and yes(value)), f"{key}={value}"


def test_unit_address_families(unit):
    families = one(unit, "Service", "RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]


def test_unit_has_no_capabilities(unit):
    assert unit["Service"].get("CapabilityBoundingSet") == [""]
    assert unit["Service"].get("AmbientCapabilities", [""]) == [""]


DROPIN_LINE = re.compile(r"^#   (\[\w+\]|[A-Za-z]+=.*)$")


def drop_in_example() -> str:
    """The commented drop-in example after 'systemctl edit' in the unit's header,
    uncommented."""
    lines = UNIT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "systemctl edit" in line)
    example: list[str] = []
    for line in lines[start + 1:]:
        m = DROPIN_LINE.match(line)
        if m:
            example.append(m.group(1))
        elif example and line.strip() != "#":
            break
    return "\n".join(example).replace("\n[", "\n\n[") + "\n"


def test_unit_documents_a_drop_in_for_the_mounts():
    example = parse_unit(drop_in_example())
    rw = one(example, "Service", "ReadWritePaths").split()
    mounts = one(example, "Unit", "RequiresMountsFor").split()
    assert rw and all(p.startswith("/") for p in rw)
    assert set(mounts) == set(rw)
    assert "systemctl edit triplicate.service" in UNIT.read_text()


def _unit_copy_with_fake_binary(tmp_path: Path, unit) -> Path:
    """verify checks that ExecStart's program exists and is executable: the copy
    points at a stand-in script; the documented drop-in sits beside it."""
    real = shlex.split(one(unit, "Service", "ExecStart"))[0]
    fake = tmp_path / "bin" / "triplicate"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    copy = tmp_path / "triplicate.service"
    copy.write_text(UNIT.read_text().replace(real, str(fake)))
    dropin = tmp_path / "triplicate.service.d"
    dropin.mkdir()
    (dropin / "override.conf").write_text(drop_in_example())
    return copy


def test_systemd_analyze_verify(tmp_path, unit):
    tool = require_tool("systemd-analyze")
    copy = _unit_copy_with_fake_binary(tmp_path, unit)
    proc = subprocess.run([tool, "verify", "--man=no", str(copy)],
                          check=False, capture_output=True, text=True, timeout=120)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "triplicate" in line]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Unknown keys and bad values are only warnings (exit 0): any of them fails here.
    assert not ours, "\n".join(ours)


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path, unit):
    """The check above can fail: a misspelt key and a missing program are reported."""
    tool = require_tool("systemd-analyze")
    copy = _unit_copy_with_fake_binary(tmp_path, unit)
    copy.write_text(copy.read_text().replace("KillSignal=", "KillSignl=", 1))
    (tmp_path / "bin" / "triplicate").unlink()
    proc = subprocess.run([tool, "verify", "--man=no", str(copy)],
                          check=False, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "KillSignl" in out, out


def test_systemd_analyze_security_exposure(tmp_path, unit):
    tool = require_tool("systemd-analyze")
    copy = _unit_copy_with_fake_binary(tmp_path, unit)
    proc = subprocess.run([tool, "security", "--offline=yes", str(copy)],
                          check=False, capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for triplicate\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.5, proc.stdout  # 1.7 when written (systemd 252)


def test_sysusers_creates_the_unit_user(tmp_path, unit):
    tool = require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    proc = subprocess.run([tool, f"--root={tmp_path}", "-"], input=SYSUSERS.read_text(),
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    users = {f[0]: f for f in (line.split(":") for line in
                               (tmp_path / "etc/passwd").read_text().splitlines())}
    groups = {f[0]: f for f in (line.split(":") for line in
                                (tmp_path / "etc/group").read_text().splitlines())}
    user, group = one(unit, "Service", "User"), one(unit, "Service", "Group")
    assert user in users and group in groups
    assert users[user][3] == groups[group][2], "primary group is not the unit's Group="
    assert 0 < int(users[user][2]) < 1000, "not a system user"
    assert users[user][5] == STATE_DIR
    assert users[user][6].endswith("nologin")


def test_tmpfiles_creates_private_directories(tmp_path):
    sysusers = require_tool("systemd-sysusers")
    tool = require_tool("systemd-tmpfiles")
    (tmp_path / "etc").mkdir()
    subprocess.run([sysusers, f"--root={tmp_path}", "-"], input=SYSUSERS.read_text(),
                   check=True, capture_output=True, text=True, timeout=60)
    proc = subprocess.run([tool, f"--root={tmp_path}", "--create", "-"],
                          input=TMPFILES.read_text(), check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for path in ("etc/triplicate", "etc/triplicate/ssh", STATE_DIR.lstrip("/")):
        mode = (tmp_path / path).stat().st_mode
        assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o750, (path, oct(mode))


# MemoryDenyWriteExecute=yes was decided by running the runtime dependencies under the
# kernel's equivalent (prctl PR_SET_MDWE, Linux 6.3+): this re-checks it, so a new
# dependency that needs writable+executable memory (cffi's ffi.callback(), a JIT, an
# extension with an executable stack) fails here instead of in production.
MDWE_PROBE = textwrap.dedent(r"""
    import ctypes, importlib, importlib.machinery, importlib.metadata as md, json, mmap
    import os, pkgutil, sys, tempfile, time, tomllib
    from packaging.requirements import Requirement

    results = {}
    if sys.argv[1] == "mdwe":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            print(json.dumps({"unsupported": os.strerror(ctypes.get_errno())})); sys.exit()
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            results["enforced"] = "W+X mapping was allowed"
        except OSError:
            results["enforced"] = "ok"

    def check(name, fn):
        try:
            fn(); results[name] = "ok"
        except BaseException as e:
            results[name] = f"{type(e).__name__}: {e}"

    # The runtime dependency closure, from the project's metadata.
    pyproject = tomllib.load(open(sys.argv[2], "rb"))
    todo = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    seen = {}
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in
                                       [""] + sorted(req.extras)):
                todo.append(r)

    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name, dist in sorted(seen.items()):
        for f in dist.files or []:
            s = str(f)
            if not s.endswith(suffixes) or ".libs/" in s or s.startswith(".."):
                continue
            mod = s[: -len(next(x for x in suffixes if s.endswith(x)))].replace("/", ".")
            check(f"import {mod}", lambda mod=mod: importlib.import_module(mod))
        tops = {f.parts[0] if len(f.parts) > 1 else f.name[:-3] for f in dist.files or []
                if f.parts[-1] == "__init__.py" and len(f.parts) == 2
                or len(f.parts) == 1 and f.name.endswith(".py")}
        for top in sorted(tops):
            check(f"import {top}", lambda top=top: importlib.import_module(top))

    for mod in ("azure.storage.blob.aio", "azure.core", "watchdog.observers",
                "aiobotocore.session", "asyncssh"):
        check(f"import {mod}", lambda mod=mod: importlib.import_module(mod))

    import triplicate
    check("import triplicate", lambda: None)
    for m in pkgutil.walk_packages(triplicate.__path__, "triplicate."):
        check(f"import {m.name}", lambda n=m.name: importlib.import_module(n))

    def ctypes_callback():
        cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
        assert cb(41) == 42

    def inotify_watch():
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        seen = []
        class H(FileSystemEventHandler):
            def on_any_event(self, event): seen.append(event)
        with tempfile.TemporaryDirectory() as d:
            obs = Observer(); obs.schedule(H(), d, recursive=True); obs.start()
            try:
                os.makedirs(os.path.join(d, "A001", "clip"))
                open(os.path.join(d, "A001", "clip", "f.0001.exr"), "wb").write(b"x")
                for _ in range(50):
                    if seen: break
                    time.sleep(0.1)
            finally:
                obs.stop(); obs.join()
        assert seen, "no inotify events"

    def crypto():
        import asyncssh, ssl
        from cryptography.hazmat.primitives.asymmetric import ed25519
        ed25519.Ed25519PrivateKey.generate().sign(b"x")
        asyncssh.generate_private_key("ssh-ed25519")
        ssl.create_default_context()

    def hashing():
        import hashlib, xxhash
        xxhash.xxh3_128(b"x" * 1_000_000).hexdigest(); hashlib.md5(b"x").hexdigest()

    def aio_http():
        import asyncio, aiohttp
        async def main():
            async with aiohttp.ClientSession():
                pass
        asyncio.run(main())

    for fn in (ctypes_callback, inotify_watch, crypto, hashing, aio_http):
        check(fn.__name__, fn)
    print(json.dumps(results))
""")


def _probe(mode: str) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", MDWE_PROBE, mode, str(REPO / "pyproject.toml")],
                          check=False, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only kernel feature")
def test_memory_deny_write_execute_is_safe_for_the_runtime(unit):
    if not yes(unit["Service"].get("MemoryDenyWriteExecute", ["no"])[-1]):
        pytest.skip("the unit does not set MemoryDenyWriteExecute")
    under = _probe("mdwe")
    if "unsupported" in under:
        msg = f"kernel has no PR_SET_MDWE (Linux 6.3+): {under['unsupported']}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    assert under.pop("enforced") == "ok"
    baseline = _probe("plain")
    assert len(baseline) > 20, baseline  # the probe really imported the dependencies
    broken = {k: v for k, v in under.items() if baseline.get(k) == "ok" and v != "ok"}
    assert not broken, ("works without, fails with MemoryDenyWriteExecute; drop it from "
                        f"the unit or the dependency: {json.dumps(broken, indent=1)}")


# --------------------------------------------------------------- launchd plist

LAUNCHD_KEYS = {  # launchd.plist(5)
    "Label", "Disabled", "UserName", "GroupName", "inetdCompatibility", "LimitLoadToHosts",
    "LimitLoadFromHosts", "LimitLoadToSessionType", "LimitLoadToHardware",
    "LimitLoadFromHardware", "Program", "ProgramArguments", "EnableGlobbing",
    "EnableTransactions", "EnablePressuredExit", "OnDemand", "ServiceIPC", "KeepAlive",
    "RunAtLoad", "RootDirectory", "WorkingDirectory", "EnvironmentVariables", "Umask",
    "TimeOut", "ExitTimeOut", "ThrottleInterval", "InitGroups", "WatchPaths",
    "QueueDirectories", "StartOnMount", "StartInterval", "StartCalendarInterval",
    "StandardInPath", "StandardOutPath", "StandardErrorPath", "Debug", "WaitForDebugger",
    "SoftResourceLimits", "HardResourceLimits", "Nice", "ProcessType", "AbandonProcessGroup",
    "LowPriorityIO", "LowPriorityBackgroundIO", "MaterializeDatalessFiles", "LaunchOnlyOnce",
    "MachServices", "Sockets", "AssociatedBundleIdentifiers",
}


@pytest.fixture(scope="module")
def plist() -> dict:
    with PLIST.open("rb") as f:
        data = plistlib.load(f)
    assert isinstance(data, dict)
    return data


def test_plist_keys_are_launchd_keys(plist):
    assert not set(plist) - LAUNCHD_KEYS, f"unknown keys: {set(plist) - LAUNCHD_KEYS}"


def test_plist_program(plist):
    assert plist["Label"] == "com.triplicate.daemon" == PLIST.stem
    assert plist["ProgramArguments"] == [
        "/usr/local/bin/triplicate", "--config", CONFIG_MAC, "run"]
    assert "Program" not in plist
    assert plist["UserName"] == plist["GroupName"] == "_triplicate"
    assert isinstance(plist["WorkingDirectory"], str)
    assert plist["WorkingDirectory"].startswith("/usr/local/var/")
    env = plist["EnvironmentVariables"]
    assert isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    assert "/usr/local/bin" in env["PATH"].split(":")
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_plist_lifecycle(plist, unit):
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False, "Crashed": True}
    assert type(plist["ThrottleInterval"]) is int and 10 <= plist["ThrottleInterval"] <= 120
    assert type(plist["ExitTimeOut"]) is int
    assert plist["ExitTimeOut"] == seconds(one(unit, "Service", "TimeoutStopSec"))
    assert plist["ProcessType"] in {"Background", "Standard"}
    assert plist["LowPriorityIO"] is False
    assert type(plist["Umask"]) is int and plist["Umask"] == int(one(unit, "Service", "UMask"), 8)
    assert type(plist["SoftResourceLimits"]["NumberOfFiles"]) is int


def test_plist_logs(plist):
    out, err = plist["StandardOutPath"], plist["StandardErrorPath"]
    assert isinstance(out, str) and isinstance(err, str) and out != err
    assert all(p.startswith("/usr/local/var/log/triplicate/") for p in (out, err))


def test_plist_says_why_this_process_type():
    text = PLIST.read_text()
    comments = " ".join(re.findall(r"<!--(.*?)-->", text, re.DOTALL))
    assert "ProcessType" in comments and "Background" in comments


def test_launchd_readme_covers_install_logs_and_access(plist):
    text = LAUNCHD_README.read_text()
    target = f"system/{plist['Label']}"
    for needed in (f"launchctl bootstrap system /Library/LaunchDaemons/{PLIST.name}",
                   f"launchctl bootout {target}", f"launchctl kickstart -k {target}",
                   plist["StandardOutPath"], plist["StandardErrorPath"], "Full Disk Access",
                   "/Volumes", CONFIG_MAC):
        assert needed in text, needed


# ------------------------------------------------------------------- Dockerfile


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments and blank lines dropped, backslash
    continuations joined (comment lines inside them are dropped too, as Docker does)."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        parts = []
        while line.endswith("\\"):
            parts.append(line[:-1].strip())
            while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                i += 1
            line = lines[i].strip() if i < len(lines) else ""
            i += 1
        parts.append(line)
        joined = " ".join(p for p in parts if p)
        word, _, rest = joined.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """'--from=build --chown=a a b c' -> ({'from': 'build', 'chown': 'a'}, ['a', 'b', 'c']);
    the JSON array form too."""
    flags: dict[str, str] = {}
    rest = args.strip()
    while m := re.match(r"--([\w-]+)(?:=(\S*))?\s+", rest):
        flags[m.group(1)] = m.group(2) or ""
        rest = rest[m.end():]
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return flags, words


def stages(instructions) -> list[dict]:
    result, args = [], {}
    for word, rest in instructions:
        if word == "FROM":
            image, _, name = rest.partition(" AS ") if " AS " in rest else rest.partition(" as ")
            result.append({"image": image.strip(), "name": name.strip() or None,
                           "instructions": [], "args": dict(args)})
        elif not result:
            if word == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            result[-1]["instructions"].append((word, rest))
            if word == "ARG":
                key, _, value = rest.partition("=")
                result[-1]["args"][key] = value.strip('"')
    return result


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: variables[m.group(1) or m.group(2)], value)


@pytest.fixture(scope="module")
def docker_stages() -> list[dict]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def final_stage(docker_stages) -> dict:
    return docker_stages[-1]


def of(stage: dict, word: str) -> list[str]:
    return [rest for w, rest in stage["instructions"] if w == word]


def test_dockerfile_parser_joins_continuations():
    text = "# c\nFROM x AS b\nRUN a \\\n  # inner comment\n  && b\n\nCMD [\"x\"]\n"
    assert parse_dockerfile(text) == [("FROM", "x AS b"), ("RUN", "a && b"), ("CMD", '["x"]')]


def test_dockerfile_is_multi_stage_on_slim_python_311(docker_stages):
    assert len(docker_stages) >= 2
    for stage in docker_stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage["image"]), stage["image"]
    build = docker_stages[0]
    assert build["name"], "the build stage needs a name to copy from"
    assert any("pip wheel" in r or "-m build" in r for r in of(build, "RUN"))
    final = final_stage(docker_stages)
    uses_build = [r for r in of(final, "RUN") + of(final, "COPY")
                  if f"from={build['name']}" in r]
    assert uses_build and any("pip install" in r for r in uses_build), \
        "the final stage does not install the wheel built in the build stage"
    assert any("--no-index" in r for r in uses_build), "final stage must not download"


def test_dockerfile_runs_as_fixed_non_root_user(docker_stages):
    final = final_stage(docker_stages)
    users = of(final, "USER")
    assert users, "no USER: the daemon would run as root"
    uid, _, gid = expand(users[-1], final["args"]).partition(":")
    assert uid not in {"", "0", "root"} and gid not in {"0", "root"}
    assert uid.isdigit() and gid.isdigit(), "a fixed numeric UID:GID (runAsNonRoot)"
    runs = " ".join(expand(r, final["args"]) for r in of(final, "RUN"))
    assert re.search(rf"groupadd\b[^&]*--gid \"?{gid}\"? triplicate", runs)
    assert re.search(rf"useradd\b[^&]*--uid \"?{uid}\"?[^&]* triplicate", runs)
    index = [w for w, _ in final["instructions"]].index
    assert index("USER") > max(i for i, (w, _) in enumerate(final["instructions"])
                               if w == "RUN"), "RUN after USER would run as the daemon user"


def test_dockerfile_journal_volume(docker_stages):
    final = final_stage(docker_stages)
    volumes = []
    for rest in of(final, "VOLUME"):
        volumes += json.loads(rest) if rest.startswith("[") else rest.split()
    assert STATE_DIR in volumes
    words = [w for w, _ in final["instructions"]]
    prepared = [i for i, (w, r) in enumerate(final["instructions"])
                if w == "RUN" and STATE_DIR in r and "-o triplicate" in r]
    assert prepared and prepared[0] < words.index("VOLUME"), \
        "the volume dir must be made and owned by triplicate before VOLUME"


def test_dockerfile_command_signal_environment(docker_stages):
    final = final_stage(docker_stages)
    assert not of(final, "ENTRYPOINT")
    (cmd,) = of(final, "CMD")
    assert cmd.startswith("["), "exec form, so SIGTERM reaches the daemon, not /bin/sh"
    argv = json.loads(cmd)
    assert argv[0] == "triplicate" and argv[-1] == "run"
    assert argv[argv.index("--config") + 1] == CONFIG_LINUX
    assert of(final, "STOPSIGNAL") == ["SIGTERM"]
    env = " ".join(of(final, "ENV"))
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)


def test_dockerfile_healthcheck_asks_the_daemon(docker_stages):
    final = final_stage(docker_stages)
    (check,) = of(final, "HEALTHCHECK")
    flags_text, _, command = check.partition("CMD ")
    flags, _ = split_flags(flags_text + "[]")
    assert seconds(flags["interval"]) <= 60 and seconds(flags["timeout"]) <= 30
    assert int(flags["retries"]) >= 2
    assert seconds(flags["start-period"]) >= 60, "the first scan comes before the endpoint opens"
    argv = json.loads(command)  # exec form: no shell in the slim image is needed
    assert argv[0] == "triplicate" and argv[-1] == "healthcheck"
    assert argv[argv.index("--config") + 1] == CONFIG_LINUX
    for stage in docker_stages[:-1]:
        assert not of(stage, "HEALTHCHECK")


def test_healthcheck_command_exists():
    from triplicate.cli import build_parser

    args = build_parser().parse_args(["--config", CONFIG_LINUX, "healthcheck"])
    assert args.func.__name__ == "cmd_healthcheck"


# .dockerignore: Docker's rules (patterns from the context root, '*' within a path
# part, '**' across parts, '!' re-includes, the last matching line wins, and a path is
# excluded when a parent directory is).


def _pattern(p: str) -> re.Pattern:
    p = p.strip().lstrip("/").rstrip("/")
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[":
            j = p.index("]", i + 1)
            out, i = out + "[" + p[i + 1:j].replace("!", "^", 1) + "]", j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored() -> Callable[[str], bool]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.lstrip("!"))))

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negate, rx in rules:
            if any(rx.match(p) for p in prefixes):
                result = not negate
        return result

    return ignored


def test_dockerignore_rules():
    ignored = dockerignored()
    for path in (".venv/bin/python", ".git/HEAD", "demo/A001/x.mov", ".cache/x",
                 "tests/unit/test_service_files.py", "daemon/triplicate/__pycache__/x.pyc",
                 "tests/.servers/log"):
        assert ignored(path), path
    for path in ("pyproject.toml", "daemon/triplicate/__init__.py", "README.md"):
        assert not ignored(path), path


def _copy_sources(docker_stages):
    """(stage, sources) for every COPY/ADD from the build context."""
    for stage in docker_stages:
        for word, rest in stage["instructions"]:
            if word in {"COPY", "ADD"}:
                flags, words = split_flags(rest)
                if "from" not in flags:
                    yield stage, [expand(s, stage["args"]) for s in words[:-1]]


def test_every_copied_file_is_in_the_repo_and_the_context(docker_stages):
    ignored = dockerignored()
    copied = list(_copy_sources(docker_stages))
    assert copied
    for _stage, sources in copied:
        matched = []
        for src in sources:
            hits = sorted(REPO.glob(src))
            if not any(ch in src for ch in "*?["):
                assert hits, f"COPY {src}: not in the repo"
            matched += hits
        assert matched, f"COPY {sources}: matches nothing"
        for hit in matched:
            for rel in _repo_files(hit):
                assert not ignored(rel), f"{rel} is COPY'd but .dockerignore drops it"


def _repo_files(path: Path) -> list[str]:
    """The files of the repo under path (tracked or not, less what .gitignore drops)."""
    rel = path.relative_to(REPO).as_posix()
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          "--", rel], cwd=REPO, capture_output=True, text=True, check=True)
    files = [f for f in out.stdout.splitlines() if (REPO / f).is_file()]
    assert files, f"{rel}: no files of the repo there"
    return files


def test_build_stage_copies_what_the_wheel_build_reads(docker_stages):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = docker_stages[0]
    sources = [s for stage, srcs in _copy_sources(docker_stages) if stage is build
               for s in srcs]
    needed = ["pyproject.toml"]
    needed += project["tool"]["setuptools"]["packages"]["find"]["where"]
    readme = project["project"].get("readme")
    if isinstance(readme, dict):
        readme = readme.get("file")
    if readme:
        needed.append(readme)
    license_ = project["project"].get("license")
    if isinstance(license_, dict) and "file" in license_:
        needed.append(license_["file"])
    for path in needed:
        assert any(fnmatch.fnmatchcase(path, s.rstrip("/")) for s in sources), \
            f"the build stage does not COPY {path}"
