"""ASC MHL v2.0 as bytes: manifests (one generation each), the chain file, C4 ids
and generation file names. Pure functions, no I/O: `history.py` reads and writes
them at a destination.

Output follows what the reference tool (`ascmhl create -h xxh64`) writes, so
that a folder continued by triplicate looks like one continued by ascmhl:
UTF-8 with a double-quoted declaration, two-space indent, a default namespace,
hashes in schema order, directory hashes in the same post-order, dates in UTC
as "+00:00". Output depends only on the arguments (never on the clock, the
host or the order of `files`), so a retry with the same inputs rewrites the
same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import __version__
from .hashing import new_digest

MHL_NS = "urn:ASC:MHL:v2.0"
CHAIN_NS = "urn:ASC:MHL:DIRECTORY:v2.0"
FOLDER = "ascmhl"
CHAIN_FILE = "ascmhl_chain.xml"
HASH_FORMATS = ("c4", "md5", "sha1", "xxh128", "xxh3", "xxh64")
"""Every hash format of ASC MHL, in the order the schema requires inside <hash>."""
ACTIONS = ("original", "verified", "failed")
PROCESS_TYPES = ("in-place", "transfer", "flatten")
DEFAULT_IGNORE = (".DS_Store", "ascmhl", "ascmhl/")
"""ascmhl's defaults; its verify uses the latest generation's list *instead of*
the defaults, so every generation must carry them."""

_C4_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_HEX = re.compile("[0-9a-f]+")
_GENERATION_NAME = re.compile(r"^(\d{4,})(?:_(.+))?\.mhl$")
_EMAIL = re.compile(r"[^@]+@[^.]+\..+")  # the schema's EmailAddressAttributeType


# ---------------------------------------------------------------- data types


@dataclass(frozen=True, slots=True)  # a generation may list 100,000
class MhlFile:
    """One file of a generation, as triplicate records it (xxh64 only)."""

    path: str  # relative to the offload root, POSIX, NFC
    size: int
    mtime: datetime  # aware
    xxh64: str
    hashed_at: datetime  # aware
    action: str = "original"

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if self.size < 0:
            raise ValueError(f"{self.path}: negative size {self.size}")
        if len(self.xxh64) != 16 or not _HEX.fullmatch(self.xxh64):
            raise ValueError(
                f"{self.path}: xxh64 must be 16 lowercase hex digits, got {self.xxh64!r}"
            )
        if self.action not in ACTIONS:
            raise ValueError(f"{self.path}: action must be one of {ACTIONS}, got {self.action!r}")
        _check_aware(self.mtime, "mtime")
        _check_aware(self.hashed_at, "hashed_at")


@dataclass(frozen=True)
class HashEntry:
    """One hash of a file in any ASC MHL format."""

    algorithm: str  # one of HASH_FORMATS
    value: str  # lowercase hex; base58 "c4..." for c4
    action: str | None = None
    hashed_at: datetime | None = None


@dataclass(frozen=True)
class Author:
    name: str
    email: str | None = None
    phone: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if self.email is not None and not _EMAIL.fullmatch(self.email):
            raise ValueError(f"author email {self.email!r} is not an address the schema accepts")


@dataclass(frozen=True)
class ProcessInfo:
    """Who wrote a generation and how (<creatorinfo> and <processinfo>).

    `ignore` adds patterns (gitwildmatch, as ascmhl) to DEFAULT_IGNORE, e.g. a
    report file put beside the media. Use basename patterns ("report.pdf",
    "*.tmp") or "**/..." ones: ascmhl-debug verify matches patterns against
    absolute paths, so an anchored pattern ("sub/x", "/x") is not honoured
    there, and the file it names counts as a new file.
    """

    hostname: str
    tool_name: str = "triplicate"
    tool_version: str = __version__
    process: str = "transfer"  # a destination copy made by triplicate
    authors: tuple[Author, ...] = ()
    location: str | None = None
    comment: str | None = None
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.process not in PROCESS_TYPES:
            raise ValueError(f"process must be one of {PROCESS_TYPES}, got {self.process!r}")
        for pattern in self.ignore:
            if not pattern.strip() or _CONTROL.search(pattern):
                raise ValueError(
                    f"ignore pattern {pattern!r} is empty or holds a control character"
                )

    @property
    def ignore_patterns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(DEFAULT_IGNORE + self.ignore))


@dataclass(frozen=True)
class ManifestFile:
    path: str  # as written in the manifest
    size: int | None
    mtime: datetime | None
    hashes: tuple[HashEntry, ...]
    previous_path: str | None = None

    def hash(self, algorithm: str) -> HashEntry | None:
        return next((h for h in self.hashes if h.algorithm == algorithm), None)


@dataclass(frozen=True)
class Manifest:
    """A parsed generation. `files` is keyed by the NFC form of each path, so a
    manifest written on macOS (often NFD) matches triplicate's NFC keys; when a
    path is listed twice the last entry wins, as in ascmhl."""

    created: datetime | None
    hostname: str | None
    tool_name: str | None
    tool_version: str | None
    process: str | None
    ignore_patterns: tuple[str, ...]
    files: Mapping[str, ManifestFile] = field(default_factory=dict)
    directories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChainEntry:
    """One <hashlist> of ascmhl_chain.xml: a generation and the C4 id of its bytes."""

    sequence: int
    path: str  # file name inside ascmhl/
    c4: str


# ------------------------------------------------------------------ small API


def c4id(data: bytes | bytearray) -> str:
    """C4 ID (SMPTE ST 2114): SHA-512, base58 in C4's alphabet, left-padded with
    its zero digit '1' to 88 digits, prefixed "c4" (90 characters)."""
    return _c4_encode(hashlib.sha512(data).digest())


def _c4_encode(digest: bytes) -> str:
    number = int.from_bytes(digest, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_C4_ALPHABET[remainder])
    return "c4" + "".join(reversed(digits)).rjust(88, "1")


def generation_filename(number: int, folder_name: str, created: datetime) -> str:
    """`0001_A001_2026-11-26_094126Z.mhl`: number (4 digits or more), the
    folder's name, the UTC creation time — what ascmhl names a generation."""
    if number < 1:
        raise ValueError(f"generation numbers start at 1, got {number}")
    if not folder_name or "/" in folder_name or _CONTROL.search(folder_name):
        raise ValueError(f"folder name {folder_name!r} cannot be part of a file name")
    _check_aware(created, "created")
    return f"{number:04d}_{folder_name}_{_utc(created):%Y-%m-%d_%H%M%S}Z.mhl"


def generation_number(filename: str) -> int | None:
    """The number ascmhl reads from a generation's file name, None if it is not one."""
    match = _GENERATION_NAME.match(filename)
    return int(match.group(1)) if match else None


def check_relative_path(path: str) -> str:
    """Refuse paths ascmhl could not find again under the offload root."""
    if not path or path.startswith("/") or "\\" in path:
        raise ValueError(f"path {path!r} must be relative with '/' separators")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"path {path!r} has an empty, '.' or '..' segment")
    if unicodedata.normalize("NFC", path) != path:
        raise ValueError(f"path {path!r} is not Unicode NFC")
    # C0 controls either cannot be written in XML or (CR) do not survive parsing.
    if _CONTROL.search(path) or _XML_FORBIDDEN.search(path):
        raise ValueError(f"path {path!r} holds a control character")
    return path


# ------------------------------------------------------------ build manifest


def build_manifest(
    files: Iterable[MhlFile],
    info: ProcessInfo,
    created: datetime,
    upstream_hashes: Mapping[str, Sequence[HashEntry]] | None = None,
    action: Callable[[MhlFile], str] | None = None,
) -> bytearray:
    """One generation's XML, valid against ASCMHL.xsd.

    `action` gives each file's action in place of its own (a history knows
    them; a second record per file would cost as much as the first).
    `upstream_hashes` adds hashes in other formats per path (e.g. an md5 the
    caller checked against an upstream MHL), written beside the xxh64 in schema
    order; pass only hashes of these very bytes. Directory hashes (xxh64
    content and structure hashes, as ascmhl computes them) describe exactly
    the listed files.
    """
    _check_aware(created, "created")
    root_dir = _tree(files)
    extra = _check_extra_hashes(upstream_hashes or {}, root_dir)
    hashes = bytearray()  # the children of <hashes>, in order, as made
    content, structure = _emit_dir(root_dir, "", hashes, extra, created, action or _own_action)
    hashlist = ET.Element("hashlist", {"version": "2.0", "xmlns": MHL_NS})
    hashlist.append(_creator_info(info, created))
    hashlist.append(
        _process_info(info, _content_structure("roothash", content, structure, created))
    )
    ET.indent(hashlist, space="  ")
    head = ET.tostring(hashlist, encoding="unicode").removesuffix("</hashlist>").encode("utf-8")
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n' + head
    if not hashes:  # the schema wants at least one child in <hashes>
        return bytearray(head + b"</hashlist>\n")
    # The document is made around the children where they lie: 100,000 files
    # make ~40 MB of them, and a copy would hold that twice.
    del hashes[-2:]  # the last child's tail closes <hashes>, one level out
    hashes[:0] = head + b"  <hashes>\n    "
    hashes += b"</hashes>\n</hashlist>\n"
    return hashes


@dataclass
class _Dir:
    files: dict[str, MhlFile] = field(default_factory=dict)
    dirs: dict[str, _Dir] = field(default_factory=dict)


def _tree(files: Iterable[MhlFile]) -> _Dir:
    root = _Dir()
    for f in files:
        *folders, name = f.path.split("/")
        if folders and folders[0] == FOLDER:
            raise ValueError(f"{f.path}: {FOLDER}/ holds the history itself and cannot be listed")
        node = root
        for folder in folders:
            if folder in node.files:
                raise ValueError(f"{f.path}: {folder!r} is listed both as a file and as a folder")
            node = node.dirs.setdefault(folder, _Dir())
        if name in node.files or name in node.dirs:
            raise ValueError(f"{f.path} is listed twice (or also as a folder)")
        node.files[name] = f
    return root


def _check_extra_hashes(
    extra: Mapping[str, Sequence[HashEntry]], root: _Dir
) -> Mapping[str, Sequence[HashEntry]]:
    for path, entries in extra.items():
        algorithms = [e.algorithm for e in entries]
        if "xxh64" in algorithms or len(set(algorithms)) != len(algorithms):
            raise ValueError(f"{path}: upstream hashes must be other formats than xxh64, each once")
        if not set(algorithms) <= set(HASH_FORMATS):
            raise ValueError(f"{path}: unknown hash format in {algorithms}")
        if any(e.action not in (None, *ACTIONS) for e in entries):
            raise ValueError(f"{path}: upstream hash actions must be one of {ACTIONS}")
        if not _lookup(root, path):
            raise ValueError(f"{path}: upstream hashes given for a file that is not listed")
    return extra


def _lookup(root: _Dir, path: str) -> MhlFile | None:
    *folders, name = path.split("/")
    node: _Dir | None = root
    for folder in folders:
        node = node.dirs.get(folder) if node else None
    return node.files.get(name) if node else None


def _emit_dir(
    node: _Dir,
    prefix: str,
    out: bytearray,
    extra: Mapping[str, Sequence[HashEntry]],
    created: datetime,
    action: Callable[[MhlFile], str],
) -> tuple[str, str]:
    """Append the elements of `node` in ascmhl's post-order (sub-folders first,
    each followed by its <directoryhash>, then files, names sorted), each
    serialized as it is made, and return its (content, structure) xxh64
    directory hashes."""
    contents: list[str] = []
    structures: list[str] = []
    for name in sorted(node.dirs):
        content, structure = _emit_dir(node.dirs[name], f"{prefix}{name}/", out, extra, created, action)
        out += _inside_hashes(_directory_hash(f"{prefix}{name}", content, structure, created))
        contents.append(content)
        structures.append(_named_hash(name, structure))
    for name in sorted(node.files):
        f = node.files[name]
        out += _file_hash(f, action(f), extra.get(f.path, ()))
        contents.append(f.xxh64)
        structures.append(_named_hash(name, f.xxh64))
    return _hash_of_hashes(contents), _hash_of_hashes(structures)


def _hash_of_hashes(hex_digests: list[str]) -> str:
    # Sorting makes a folder's hash independent of listing order; the raw
    # digest bytes (not the hex text) are hashed, as in ascmhl.
    digest = new_digest("xxh64")
    for value in sorted(hex_digests):
        digest.update(bytes.fromhex(value))
    return digest.hexdigest()


def _named_hash(name: str, hex_digest: str) -> str:
    digest = new_digest("xxh64")
    digest.update(name.encode("utf-8") + bytes.fromhex(hex_digest))
    return digest.hexdigest()


def _own_action(f: MhlFile) -> str:
    return f.action


def _file_hash(f: MhlFile, action: str, extra: Sequence[HashEntry]) -> bytes:
    """A file's <hash> as ElementTree lays it out inside <hashes> (a test holds
    the two equal), written as text: an element tree per file cost twice the
    time of the whole generation, and a 100,000-file one takes seconds."""
    entries = sorted([*extra, HashEntry("xxh64", f.xxh64, action, f.hashed_at)],
                     key=lambda e: HASH_FORMATS.index(e.algorithm))
    lines = [f'<hash>\n      <path size="{f.size}" lastmodificationdate="{_date(f.mtime)}">{_escape(f.path)}</path>']
    lines.extend(f"      {_hash_text(e)}" for e in entries)
    lines.append("    </hash>\n    ")
    return "\n".join(lines).encode("utf-8")


def _hash_text(entry: HashEntry) -> str:
    """The one writer of a hash value element (<xxh64 action=... hashdate=...>)."""
    action = "" if entry.action is None else f' action="{entry.action}"'
    hashdate = "" if entry.hashed_at is None else f' hashdate="{_utc(entry.hashed_at).isoformat()}"'
    return f"<{entry.algorithm}{action}{hashdate}>{_escape(entry.value)}</{entry.algorithm}>"


def _escape(text: str) -> str:
    # what ElementTree escapes in text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hash_value(entry: HashEntry) -> ET.Element:
    # read back from the text writer: a few per folder, never one per file
    return ET.fromstring(_hash_text(entry))


def _directory_hash(path: str, content: str, structure: str, created: datetime) -> ET.Element:
    element = _content_structure("directoryhash", content, structure, created)
    element.insert(0, _text("path", path))
    return element


def _content_structure(tag: str, content: str, structure: str, created: datetime) -> ET.Element:
    element = ET.Element(tag)
    for part, value in (("content", content), ("structure", structure)):
        ET.SubElement(element, part).append(_hash_value(HashEntry("xxh64", value, None, created)))
    return element


def _creator_info(info: ProcessInfo, created: datetime) -> ET.Element:
    element = ET.Element("creatorinfo")
    element.append(_text("creationdate", _date(created)))
    element.append(_text("hostname", info.hostname))
    element.append(_text("tool", info.tool_name, version=info.tool_version))
    for author in info.authors:
        attrs = {
            k: v
            for k, v in (("email", author.email), ("phone", author.phone), ("role", author.role))
            if v
        }
        element.append(_text("author", author.name, **attrs))
    if info.location is not None:
        element.append(_text("location", info.location))
    if info.comment is not None:
        element.append(_text("comment", info.comment))
    return element


def _process_info(info: ProcessInfo, roothash: ET.Element) -> ET.Element:
    element = ET.Element("processinfo")
    element.append(_text("process", info.process))
    element.append(roothash)
    ignore = ET.SubElement(element, "ignore")
    ignore.extend(_text("pattern", p) for p in info.ignore_patterns)
    return element


def _text(tag: str, text: str, **attrs: str) -> ET.Element:
    for value in (text, *attrs.values()):
        if _XML_FORBIDDEN.search(value):
            raise ValueError(f"<{tag}> value {value!r} holds a character XML cannot carry")
    element = ET.Element(tag, attrs)
    element.text = text
    return element


def _serialize(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8") + b"\n"


def _inside_hashes(element: ET.Element) -> bytes:
    """One child of <hashes> as bytes, indented as in the whole document: a
    generation of 100,000 files never holds a tree of half a million elements."""
    ET.indent(element, space="  ", level=2)
    element.tail = "\n    "
    return ET.tostring(element, encoding="unicode").encode("utf-8")


def _date(value: datetime) -> str:
    # ascmhl writes creation and modification dates to the second.
    return _utc(value).isoformat(timespec="seconds")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


# ------------------------------------------------------------ parse manifest


def parse_manifest(data: bytes) -> Manifest:
    """Read a generation written by any ASC MHL v2.0 tool (ascmhl, ShotPut,
    Hedge, Silverstack, triplicate). Hex digests are lowercased; dates that do
    not parse become None (they are informational, the hashes are what count).
    Raises ValueError for anything that is not an ASC MHL v2.0 manifest."""
    files: dict[str, ManifestFile] = {}

    def keep(f: ManifestFile) -> None:
        files[unicodedata.normalize("NFC", f.path)] = f

    return dataclasses.replace(read_manifest(data, keep), files=files)


def read_manifest(data: bytes, on_file: Callable[[ManifestFile], None]) -> Manifest:
    """`parse_manifest` holding no file: each is handed to `on_file` as it is
    parsed, in document order (a path listed twice comes twice), and the
    Manifest returned has none. A generation of 100,000 files parsed as one
    element tree took ~200 MiB; this holds one <hash> at a time."""
    head: dict[str, ET.Element] = {}
    directories: list[str] = []
    for element in _stream(data, MHL_NS, "hashlist"):
        tag = _local(element.tag)
        if tag == "hash":
            on_file(_parse_file(element))
        elif tag == "directoryhash":
            directories.append(_child_text(element, "path") or "")
        else:
            head.setdefault(tag, element)
    creator, process = head.get("creatorinfo"), head.get("processinfo")
    tool = _child(creator, "tool")
    return Manifest(
        created=_parse_date(_child_text(creator, "creationdate")),
        hostname=_child_text(creator, "hostname"),
        tool_name=_child_text(creator, "tool"),
        tool_version=tool.get("version") if tool is not None else None,
        process=_child_text(process, "process"),
        ignore_patterns=tuple(p.text or "" for p in _children(_child(process, "ignore")) if p.text),
        directories=tuple(directories),
    )


def _stream(data: bytes, namespace: str, name: str) -> Iterator[ET.Element]:
    """The root's children, each once complete, and in place of <hashes> its
    children one by one, each dropped once the caller is done with it."""
    open_: list[ET.Element] = []
    try:
        for event, element in ET.iterparse(io.BytesIO(data), events=("start", "end")):
            if event == "start":
                if not open_:
                    _check_root(element, namespace, name)
                open_.append(element)
                continue
            open_.pop()
            if len(open_) == 2 and _local(open_[1].tag) == "hashes":
                yield element
                open_[1].remove(element)
            elif len(open_) == 1 and _local(element.tag) != "hashes":
                yield element
    except ET.ParseError as e:
        raise ValueError(f"not well-formed XML: {e}") from None


def _parse_file(element: ET.Element) -> ManifestFile:
    path = _child(element, "path")
    if path is None or not path.text:
        raise ValueError("a <hash> element has no <path>")
    size = path.get("size")
    hashes = tuple(_parse_hash(e) for e in element if _local(e.tag) in HASH_FORMATS)
    return ManifestFile(
        path=path.text,
        size=int(size) if size is not None else None,
        mtime=_parse_date(path.get("lastmodificationdate")),
        hashes=hashes,
        previous_path=_child_text(element, "previousPath"),
    )


def _parse_hash(element: ET.Element) -> HashEntry:
    algorithm = _local(element.tag)
    value = (element.text or "").strip()
    if algorithm != "c4":  # c4 is base58 and case-sensitive
        value = value.lower()
    return HashEntry(algorithm, value, element.get("action"), _parse_date(element.get("hashdate")))


def _parse_root(data: bytes, namespace: str, name: str) -> ET.Element:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ValueError(f"not well-formed XML: {e}") from None
    _check_root(root, namespace, name)
    return root


def _check_root(root: ET.Element, namespace: str, name: str) -> None:
    if root.tag != f"{{{namespace}}}{name}":
        raise ValueError(f"root element is {root.tag}, expected <{name}> in namespace {namespace}")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element | None) -> list[ET.Element]:
    return list(element) if element is not None else []


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    return next((c for c in _children(element) if _local(c.tag) == name), None)


def _child_text(element: ET.Element | None, name: str) -> str | None:
    child = _child(element, name)
    return child.text if child is not None else None


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # xs:dateTime may omit the zone; such dates are taken as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------- chain


def parse_chain(data: bytes) -> list[ChainEntry]:
    """Entries of ascmhl_chain.xml in document order. Raises ValueError when the
    file is not a chain or an entry lacks its number, path or C4 id."""
    root = _parse_root(data, CHAIN_NS, "ascmhldirectory")
    return [_parse_chain_entry(e) for e in root if _local(e.tag) == "hashlist"]


def _parse_chain_entry(element: ET.Element) -> ChainEntry:
    path = (_child_text(element, "path") or "").strip()
    c4 = (_child_text(element, "c4") or "").strip()
    number = element.get("sequencenr")
    if not path or not c4:
        raise ValueError(f"chain entry {path!r} lacks its path or its c4 id")
    # sequencenr is optional in the schema; ascmhl itself numbers by file name.
    sequence = int(number) if number is not None else generation_number(path)
    if sequence is None:
        raise ValueError(f"chain entry {path!r} has no sequence number")
    return ChainEntry(sequence, path, c4)


def build_chain(entries: Iterable[ChainEntry]) -> bytes:
    """ascmhl_chain.xml for `entries`, ordered by sequence number."""
    ordered = sorted(entries, key=lambda e: e.sequence)
    numbers = [e.sequence for e in ordered]
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise ValueError(f"chain sequence numbers must be unique and positive: {numbers}")
    root = ET.Element("ascmhldirectory", {"xmlns": CHAIN_NS})
    for entry in ordered:
        if "/" in entry.path or not entry.path:
            raise ValueError(f"chain entry path {entry.path!r} must be a file name in {FOLDER}/")
        hashlist = ET.SubElement(root, "hashlist", {"sequencenr": str(entry.sequence)})
        hashlist.extend([_text("path", entry.path), _text("c4", entry.c4)])
    return _serialize(root)
