"""Helpers for the ASC MHL tests: the XSDs, the reference tool (ascmhl), a
destination over a plain folder, and a sample offload with awkward names."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree
from triplicate import mhl
from triplicate.destinations.base import check_key
from triplicate.hashing import hash_file

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent  # ascmhl is installed in the same venv
XSD_FILES = ("ASCMHL.xsd", "ASCMHLDirectory.xsd", "ASCMHLDirectory__combined.xsd")

# Names that have broken MHL tools: spaces, accents (NFC), emoji, a zero-byte
# file, deep nesting, a name that sorts before and after folders.
SAMPLE = {
    "A001C001_230101_R1AB.mov": bytes(range(256)) * 400,
    "Clip 01 – día.mov": b"accents and a dash" * 1000,
    "empty.bin": b"",
    "émoji 🎬/take ✓ 1.wav": b"\x00\x01" * 5000,
    "nested/a/b/c/deep.txt": b"deep",
    "nested/a/side car.xml": b"<sidecar/>",
    "zz last.txt": b"last",
}


def xsd_dir() -> Path:
    """The folder of the ASC MHL XSDs: $TRIPLICATE_ASCMHL_XSD, else shared/ beside
    the repo. Missing files fail the test: a skipped schema check proves nothing."""
    override = os.environ.get("TRIPLICATE_ASCMHL_XSD")
    folder = Path(override) if override else REPO / ".." / "shared" / "asc-mhl" / "xsd"
    for name in XSD_FILES:
        assert (folder / name).is_file(), (
            f"ASC MHL schema {folder / name} is missing (set TRIPLICATE_ASCMHL_XSD)"
        )
    return folder.resolve()


@functools.cache
def _schema(name: str) -> etree.XMLSchema:
    # Parsed from its path so that ASCMHLDirectory.xsd finds ASCMHL.xsd beside it.
    return etree.XMLSchema(etree.parse(str(xsd_dir() / name)))


def assert_valid_manifest(data: bytes) -> None:
    schema = _schema("ASCMHL.xsd")
    assert schema.validate(etree.fromstring(data)), f"manifest fails ASCMHL.xsd: {schema.error_log}"


def assert_valid_chain(data: bytes) -> None:
    schema = _schema("ASCMHLDirectory.xsd")
    assert schema.validate(etree.fromstring(data)), (
        f"chain fails ASCMHLDirectory.xsd: {schema.error_log}"
    )


def assert_valid(key: str, data: bytes) -> None:
    """Validate an ASC MHL file by its name."""
    if key.endswith(".mhl"):
        assert_valid_manifest(data)
    elif key.endswith(mhl.CHAIN_FILE):
        assert_valid_chain(data)


def run_tool(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `ascmhl` or `ascmhl-debug` from this venv."""
    # The CLI asks GitHub for a newer release on every run; a closed loopback
    # proxy makes that fail at once instead of sending traffic off the machine.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    cmd = [str(TOOLS / tool), *map(str, args)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)


def verify(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tool("ascmhl-debug", "verify", root, *args)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


def assert_tools_accept(root: Path) -> None:
    """Everything the reference tool can say about a history at `root` is good."""
    assert_ok(verify(root))
    assert_ok(verify(root, "-dh"))  # directory hashes too
    assert_ok(run_tool("ascmhl", "info", root))
    xsd = xsd_dir()
    for manifest in sorted((root / mhl.FOLDER).glob("*.mhl")):
        assert_ok(
            run_tool("ascmhl-debug", "xsd-schema-check", manifest, "-xsd", xsd / "ASCMHL.xsd")
        )
    chain = root / mhl.FOLDER / mhl.CHAIN_FILE
    assert_ok(
        run_tool(
            "ascmhl-debug",
            "xsd-schema-check",
            chain,
            "-df",
            "-xsd",
            xsd / "ASCMHLDirectory__combined.xsd",
        )
    )


class FolderDestination:
    """The two Destination methods history.py uses, over a local folder. Every
    write is validated against the XSD and remembered (key order matters)."""

    def __init__(self, root: Path, name: str = "folder") -> None:
        self.root = root
        self.name = name
        self.writes: list[str] = []
        self.fail_on: str | None = None  # a key suffix whose write raises, to simulate a crash

    async def read_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / check_key(key)).read_bytes()
        except FileNotFoundError:
            return None

    async def write_bytes(self, key: str, data: bytes | bytearray) -> None:
        assert_valid(key, data)
        if self.fail_on and key.endswith(self.fail_on):
            raise ConnectionError(f"simulated crash before writing {key}")
        path = self.root / check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic, as the protocol requires
        self.writes.append(key)


def write_sample(folder: Path, files: dict[str, bytes] = SAMPLE) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def scan(folder: Path, hashed_at: datetime | None = None) -> list[mhl.MhlFile]:
    """MhlFile records of every file under `folder` but its own ascmhl/."""
    hashed_at = hashed_at or datetime.now(UTC)
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or rel.parts[0] == mhl.FOLDER:
            continue
        digest, size = hash_file(path)
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        found.append(
            mhl.MhlFile(
                unicodedata.normalize("NFC", rel.as_posix()), size, mtime, digest, hashed_at
            )
        )
    return found
