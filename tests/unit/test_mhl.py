"""Unit tests of triplicate.mhl: the pure ASC MHL functions."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import mhl_tools as t  # tests/ is on pythonpath (pyproject)
import pytest
from ascmhl import hasher as ascmhl_hasher
from lxml import etree
from triplicate import mhl
from triplicate.hashing import xxh64_bytes

CREATED = datetime(2026, 11, 26, 9, 41, 26, tzinfo=UTC)
INFO = mhl.ProcessInfo(hostname="ingest-01", tool_version="0.1.0")
NS = {"m": mhl.MHL_NS}


def make_file(path: str, data: bytes = b"hello", action: str = "original") -> mhl.MhlFile:
    mtime = datetime(2026, 11, 20, 8, 0, 5, tzinfo=UTC)
    hashed = datetime(2026, 11, 26, 9, 41, 25, 123456, tzinfo=UTC)
    return mhl.MhlFile(path, len(data), mtime, xxh64_bytes(data), hashed, action)


FILES = [
    make_file("A001C001.mov", b"clip one"),
    make_file("sub/é 😀 take.wav", b"x"),
    make_file("sub/deeper/empty.bin", b""),
    make_file("zz.txt", b"hello", "verified"),
]


# ------------------------------------------------------------ hashes, C4


def test_xxh64_as_asc_mhl_writes_it() -> None:
    assert xxh64_bytes(b"") == "ef46db3751d8e999"
    assert xxh64_bytes(b"hello") == "26c7827d889f6da3"


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"\x00" * 1000, random.Random(7).randbytes(100_000)]
)
def test_c4id_matches_ascmhl(data: bytes) -> None:
    ours = mhl.c4id(data)
    assert ours == ascmhl_hasher.hash_data(data, "c4")
    assert len(ours) == 90 and ours.startswith("c4")


@pytest.mark.parametrize(
    "digest", [bytes(64), bytes(10) + bytes(range(54)), b"\xff" * 64, bytes(63) + b"\x01"]
)
def test_c4_encoding_pads_and_decodes_like_ascmhl(digest: bytes) -> None:
    # Digests with leading zero bytes need the '1' padding; random inputs never hit it.
    encoded = mhl._c4_encode(digest)
    assert len(encoded) == 90
    assert ascmhl_hasher.C4.bytes_from_string_digest(encoded) == digest


def test_c4_of_zero_digest_is_all_ones() -> None:
    assert mhl._c4_encode(bytes(64)) == "c4" + "1" * 88


# ------------------------------------------------------------ file names


def test_generation_filename_matches_ascmhl() -> None:
    assert mhl.generation_filename(1, "A001", CREATED) == "0001_A001_2026-11-26_094126Z.mhl"
    cest = timezone(timedelta(hours=2))
    assert (
        mhl.generation_filename(12, "Day 1", CREATED.astimezone(cest))
        == "0012_Day 1_2026-11-26_094126Z.mhl"
    )
    assert mhl.generation_filename(12345, "A", CREATED).startswith("12345_A_")


def test_generation_number_reads_names_like_ascmhl() -> None:
    assert mhl.generation_number("0007_A001_2026-11-26_094126Z.mhl") == 7
    assert mhl.generation_number("12345_x.mhl") == 12345
    assert mhl.generation_number("007_x.mhl") is None
    assert mhl.generation_number("ascmhl_chain.xml") is None


@pytest.mark.parametrize(
    "number, folder, created",
    [
        (0, "A001", CREATED),
        (1, "", CREATED),
        (1, "a/b", CREATED),
        (1, "A001", CREATED.replace(tzinfo=None)),
    ],
)
def test_generation_filename_refuses_bad_input(number: int, folder: str, created: datetime) -> None:
    with pytest.raises(ValueError):
        mhl.generation_filename(number, folder, created)


# ------------------------------------------------------------ MhlFile checks


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs.mov",
        "a/../b",
        "a//b",
        "./a",
        "a/",
        "a\\b",
        "e\u0301.mov",
        "bad\rname",
        "tab\there",
        "nul\x00",
    ],
)
def test_mhlfile_refuses_paths_ascmhl_cannot_find(path: str) -> None:
    with pytest.raises(ValueError):
        make_file(path)


@pytest.mark.parametrize(
    "change",
    [
        {"xxh64": "EF46DB3751D8E999"},
        {"xxh64": "ef46db3751d8e99"},
        {"size": -1},
        {"action": "new"},
        {"mtime": datetime(2026, 1, 1)},
        {"hashed_at": datetime(2026, 1, 1)},
    ],
)
def test_mhlfile_refuses_bad_fields(change: dict) -> None:
    with pytest.raises(ValueError):
        replace(make_file("a.mov"), **change)


def test_processinfo_checks_schema_values() -> None:
    with pytest.raises(ValueError):
        mhl.ProcessInfo(hostname="h", process="copy")
    with pytest.raises(ValueError):
        mhl.Author("Ana", email="not-an-address")
    with pytest.raises(ValueError):
        mhl.ProcessInfo(hostname="h", ignore=("",))
    info = mhl.ProcessInfo(hostname="h", ignore=("report.pdf", "ascmhl", "report.pdf"))
    assert info.ignore_patterns == (".DS_Store", "ascmhl", "ascmhl/", "report.pdf")


# ------------------------------------------------------------ manifests


def test_manifest_is_valid_and_shaped_like_ascmhl() -> None:
    data = mhl.build_manifest(FILES, INFO, CREATED)
    t.assert_valid_manifest(data)
    assert data.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0">\n'
    )
    root = etree.fromstring(data)
    assert (
        root.findtext("m:creatorinfo/m:creationdate", namespaces=NS) == "2026-11-26T09:41:26+00:00"
    )
    assert root.findtext("m:processinfo/m:process", namespaces=NS) == "transfer"
    paths = root.xpath("m:hashes/*/m:path/text()", namespaces=NS)
    # ascmhl's post-order: sub-folders first (each after its files), then files, names sorted
    assert paths == [
        "sub/deeper/empty.bin",
        "sub/deeper",
        "sub/é 😀 take.wav",
        "sub",
        "A001C001.mov",
        "zz.txt",
    ]
    empty = root.xpath("m:hashes/m:hash[m:path='sub/deeper/empty.bin']", namespaces=NS)[0]
    assert empty.find("m:path", NS).get("size") == "0"
    assert empty.find("m:xxh64", NS).get("hashdate") == "2026-11-26T09:41:25.123456+00:00"


def test_manifest_round_trip() -> None:
    manifest = mhl.parse_manifest(mhl.build_manifest(FILES, INFO, CREATED))
    assert manifest.created == CREATED
    assert (manifest.tool_name, manifest.tool_version, manifest.hostname) == (
        "triplicate",
        "0.1.0",
        "ingest-01",
    )
    assert manifest.process == "transfer"
    assert manifest.ignore_patterns == mhl.DEFAULT_IGNORE
    assert manifest.directories == ("sub/deeper", "sub")
    assert set(manifest.files) == {f.path for f in FILES}
    for f in FILES:
        got = manifest.files[f.path]
        assert (got.path, got.size, got.mtime) == (f.path, f.size, f.mtime)
        assert got.hashes == (mhl.HashEntry("xxh64", f.xxh64, f.action, f.hashed_at),)


def test_manifest_is_deterministic() -> None:
    one = mhl.build_manifest(FILES, INFO, CREATED)
    assert mhl.build_manifest(list(reversed(FILES)), INFO, CREATED) == one
    assert mhl.build_manifest(random.Random(3).sample(FILES, len(FILES)), INFO, CREATED) == one
    assert mhl.build_manifest(FILES, INFO, CREATED + timedelta(seconds=1)) != one


def test_manifest_with_full_creator_info_and_extra_hashes_is_valid() -> None:
    info = replace(
        INFO,
        authors=(mhl.Author("Ana Núñez", "ana@example.com", "+49 1", "DIT"), mhl.Author("Bo")),
        location="Stage 3 & <lot>",
        comment="day 1",
        ignore=("triplicate-report.pdf", "*.tmp"),
    )
    md5 = mhl.HashEntry("md5", "5d41402abc4b2a76b9719d911017c592", "verified", CREATED)
    c4 = mhl.HashEntry("c4", mhl.c4id(b"hello"), "verified", None)
    data = mhl.build_manifest(FILES, info, CREATED, upstream_hashes={"zz.txt": [md5, c4]})
    t.assert_valid_manifest(data)
    entry = mhl.parse_manifest(data).files["zz.txt"]
    assert [h.algorithm for h in entry.hashes] == ["c4", "md5", "xxh64"]  # schema order
    assert entry.hash("md5") == md5
    manifest = mhl.parse_manifest(data)
    assert manifest.ignore_patterns == mhl.DEFAULT_IGNORE + ("triplicate-report.pdf", "*.tmp")


def test_a_manifest_is_laid_out_exactly_as_elementtree_lays_it_out() -> None:
    """Files' <hash> elements are written as text (an element tree per file is
    slow at 100,000 files); the document must be byte for byte what
    ElementTree writes for the same tree, as the rest of it is."""
    import xml.etree.ElementTree as ET

    info = replace(INFO, authors=(mhl.Author("Ann & <Bo>", "a@b.co"),), ignore=("triplicate-report.html",))
    files = [*FILES, make_file("a & b/<x>.mov", b"1", "failed"), make_file("a & b/q\"uote'.mov", b"2", "verified")]
    md5 = mhl.HashEntry("md5", "5d41402abc4b2a76b9719d911017c592", "verified", CREATED.astimezone(timezone(timedelta(hours=2))))
    c4 = mhl.HashEntry("c4", mhl.c4id(b"hello"), None, None)
    data = mhl.build_manifest(files, info, CREATED, upstream_hashes={"zz.txt": [md5, c4], "A001C001.mov": [c4]})
    root = ET.fromstring(data)
    for element in root.iter():
        element.tag = element.tag.split("}", 1)[-1]
    root.attrib = {"version": "2.0", "xmlns": mhl.MHL_NS}
    ET.indent(root, space="  ")
    expected = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode() + b"\n"
    assert data == expected
    assert data.count(b"<hash>") == len(files) and b"a &amp; b/&lt;x&gt;.mov" in data


@pytest.mark.parametrize(
    "extra",
    [
        {"zz.txt": [mhl.HashEntry("xxh64", "ef46db3751d8e999")]},
        {"zz.txt": [mhl.HashEntry("md5", "0" * 32), mhl.HashEntry("md5", "1" * 32)]},
        {"zz.txt": [mhl.HashEntry("sha256", "0" * 64)]},
        {"zz.txt": [mhl.HashEntry("md5", "0" * 32, action="new")]},
        {"missing.mov": [mhl.HashEntry("md5", "0" * 32)]},
    ],
)
def test_manifest_refuses_bad_upstream_hashes(extra: dict) -> None:
    with pytest.raises(ValueError):
        mhl.build_manifest(FILES, INFO, CREATED, upstream_hashes=extra)


@pytest.mark.parametrize(
    "files",
    [
        [make_file("a.mov"), make_file("a.mov", b"other")],
        [make_file("a"), make_file("a/b.mov")],
        [make_file("a/b.mov"), make_file("a")],
        [make_file("ascmhl/0001_x.mhl")],
    ],
)
def test_manifest_refuses_inconsistent_file_lists(files: list[mhl.MhlFile]) -> None:
    with pytest.raises(ValueError):
        mhl.build_manifest(files, INFO, CREATED)


def test_manifest_refuses_text_xml_cannot_carry() -> None:
    with pytest.raises(ValueError):
        mhl.build_manifest(FILES, replace(INFO, comment="bell\x07"), CREATED)


def test_directory_hashes_match_ascmhl_algorithm() -> None:
    files = [
        make_file("a.txt", b"hello"),
        make_file("sub/b.bin", b"b"),
        make_file("sub/c.bin", b""),
    ]
    root = etree.fromstring(mhl.build_manifest(files, INFO, CREATED))

    sub = ascmhl_hasher.DirectoryHashContext("xxh64")
    sub.append_file_hash("sub/b.bin", xxh64_bytes(b"b"))
    sub.append_file_hash("sub/c.bin", xxh64_bytes(b""))
    top = ascmhl_hasher.DirectoryHashContext("xxh64")
    top.append_file_hash("a.txt", xxh64_bytes(b"hello"))
    top.append_directory_hashes("sub", sub.final_content_hash_str(), sub.final_structure_hash_str())

    def hashes(element: etree._Element) -> tuple[str, str]:
        return element.findtext("m:content/m:xxh64", namespaces=NS), element.findtext(
            "m:structure/m:xxh64", namespaces=NS
        )

    assert hashes(root.find("m:processinfo/m:roothash", NS)) == (
        top.final_content_hash_str(),
        top.final_structure_hash_str(),
    )
    assert hashes(root.find("m:hashes/m:directoryhash", NS)) == (
        sub.final_content_hash_str(),
        sub.final_structure_hash_str(),
    )


def test_parse_manifest_normalises_foreign_writing() -> None:
    # NFD paths (macOS), uppercase hex, a prefixed namespace, no size, odd dates
    data = f"""<?xml version="1.0"?>
<a:hashlist xmlns:a="{mhl.MHL_NS}" version="2.0">
  <a:creatorinfo><a:creationdate>2026-01-02T03:04:05Z</a:creationdate><a:hostname>mac</a:hostname>
    <a:tool version="9">Offload Tool</a:tool></a:creatorinfo>
  <a:processinfo><a:process>in-place</a:process></a:processinfo>
  <a:hashes>
    <a:hash><a:path lastmodificationdate="yesterday">Cafe\u0301/clip.mov</a:path>
      <a:md5 action="original" hashdate="2026-01-02T03:04:05">5D41402ABC4B2A76B9719D911017C592</a:md5>
      <a:xxh128 action="original">ABCDEF0123456789ABCDEF0123456789</a:xxh128></a:hash>
  </a:hashes>
</a:hashlist>""".encode()
    manifest = mhl.parse_manifest(data)
    assert manifest.created == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert manifest.ignore_patterns == ()
    entry = manifest.files["Caf\u00e9/clip.mov"]
    assert entry.path == "Cafe\u0301/clip.mov"
    assert (entry.size, entry.mtime) == (None, None)
    assert entry.hash("md5") == mhl.HashEntry(
        "md5",
        "5d41402abc4b2a76b9719d911017c592",
        "original",
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert entry.hash("xxh128").value == "abcdef0123456789abcdef0123456789"
    assert entry.hash("xxh64") is None


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b'<hashlist version="1.1"><hash><file>a</file><md5>0</md5></hash></hashlist>',  # MHL v1
        f'<ascmhldirectory xmlns="{mhl.CHAIN_NS}"/>'.encode(),
        f'<hashlist xmlns="{mhl.MHL_NS}"><hashes><hash><md5>0</md5></hash></hashes></hashlist>'.encode(),
    ],
)
def test_parse_manifest_refuses_non_manifests(data: bytes) -> None:
    with pytest.raises(ValueError):
        mhl.parse_manifest(data)


# ------------------------------------------------------------ chain


def test_chain_round_trip_valid_and_ordered() -> None:
    entries = [
        mhl.ChainEntry(2, "0002_A001_2026-11-27_000000Z.mhl", mhl.c4id(b"2")),
        mhl.ChainEntry(1, "0001_A001_2026-11-26_094126Z.mhl", mhl.c4id(b"1")),
    ]
    data = mhl.build_chain(entries)
    t.assert_valid_chain(data)
    assert data.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:v2.0">\n'
    )
    assert mhl.parse_chain(data) == sorted(entries, key=lambda e: e.sequence)
    assert mhl.build_chain(reversed(entries)) == data


def test_chain_matches_ascmhl_layout() -> None:
    entry = mhl.ChainEntry(1, "0001_A001_2026-11-26_094126Z.mhl", mhl.c4id(b""))
    expected = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:v2.0">\n'
        '  <hashlist sequencenr="1">\n'
        "    <path>0001_A001_2026-11-26_094126Z.mhl</path>\n"
        f"    <c4>{entry.c4}</c4>\n"
        "  </hashlist>\n"
        "</ascmhldirectory>\n"
    )
    assert mhl.build_chain([entry]).decode() == expected


@pytest.mark.parametrize(
    "entries",
    [
        [mhl.ChainEntry(1, "a.mhl", "c4x"), mhl.ChainEntry(1, "b.mhl", "c4y")],
        [mhl.ChainEntry(0, "a.mhl", "c4x")],
        [mhl.ChainEntry(1, "sub/a.mhl", "c4x")],
    ],
)
def test_chain_refuses_bad_entries(entries: list[mhl.ChainEntry]) -> None:
    with pytest.raises(ValueError):
        mhl.build_chain(entries)


def test_parse_chain_numbers_by_file_name_when_sequencenr_is_missing() -> None:
    data = f"""<ascmhldirectory xmlns="{mhl.CHAIN_NS}">
      <hashlist><path>0003_A_2026-01-01_000000Z.mhl</path><c4>c4abc</c4></hashlist>
    </ascmhldirectory>""".encode()
    assert mhl.parse_chain(data) == [mhl.ChainEntry(3, "0003_A_2026-01-01_000000Z.mhl", "c4abc")]


@pytest.mark.parametrize(
    "body",
    [
        "<hashlist sequencenr='1'><path>a.mhl</path></hashlist>",
        "<hashlist><path>a.mhl</path><c4>c4x</c4></hashlist>",
    ],
)
def test_parse_chain_refuses_incomplete_entries(body: str) -> None:
    with pytest.raises(ValueError):
        mhl.parse_chain(
            f'<ascmhldirectory xmlns="{mhl.CHAIN_NS}">{body}</ascmhldirectory>'.encode()
        )
