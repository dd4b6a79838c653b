"""The zip writer and reader that keep the central directory on disk (connectors/archive/zipwriter.py,
zipindex.py): the same bytes as ``zipfile`` writes, any standard zip read, ZIP64, damage caught,
memory flat whatever the number of members."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from exporter.connectors.archive.zipindex import ZipIndex
from exporter.connectors.archive.zipwriter import DEFLATED, STORED, ZipWriter, method_for

from exporter.errors import ArchiveError
from tests.conftest import require_tool

MEMBERS = [  # name, bytes, method, streamed
    ("a.txt", b"hello " * 1000, DEFLATED, False),
    ("photos/p.jpg", os.urandom(5000), STORED, False),
    ("empty.json", b"", DEFLATED, False),
    ("forms/1/submissions.jsonl", b'{"id": 1}\n' * 3000, DEFLATED, True),
    ("forms/1/media/été/ünïcode.png", os.urandom(3000), STORED, True),
    ("big.bin", os.urandom(200_000) * 3, DEFLATED, True),
    ("manifest.json", b"{}\n", DEFLATED, False),
]


def _ours(path: Path, members=MEMBERS, writer=ZipWriter) -> None:
    with open(path, "wb") as fh:
        zw = writer(fh, spool_dir=str(path.parent))
        for name, data, method, streamed in members:
            if streamed:
                with zw.open(name, method) as dst:
                    for i in range(0, len(data), 65536):
                        dst.write(data[i:i + 65536])
            else:
                zw.write(name, data, method)
        zw.close()


#: Python's zipfile writes a member opened with ``force_zip64`` as the ZIP64 specification says
#: (version 4.5, its sizes in the local header's ZIP64 extra field) only since 3.11.4 (gh-103861;
#: Debian 12's 3.11.2 writes version 2.0 and 32-bit sizes there); ours always does, so a byte for
#: byte reference of streamed members needs a fixed zipfile
ZIPFILE_FIXED = sys.version_info >= (3, 11, 4)


def _comparable(members):
    """The members this interpreter's zipfile writes as ours does: all of them, or, before
    gh-103861's fix, those not streamed."""
    return members if ZIPFILE_FIXED else [m for m in members if not m[3]]


def _local_headers(path: Path) -> dict[str, tuple[int, int, int]]:
    """Each member's local header: (version needed, compressed size, size) as written there."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            head = struct.unpack("<4sHHHHHIIIHH", fh.read(30))
            out[info.filename] = (head[1], head[7], head[8])
    return out


def _zipfiles(path: Path, members=MEMBERS) -> None:
    """The same members through ``zipfile``, as the archive writers used it before."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for name, data, method, streamed in members:
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = method, 0o644 << 16
            if streamed:
                with zf.open(info, "w", force_zip64=True) as dst:
                    for i in range(0, len(data), 65536):
                        dst.write(data[i:i + 65536])
            else:
                zf.writestr(info, data)


def test_the_bytes_are_those_zipfile_writes(tmp_path):
    _ours(tmp_path / "ours.zip")
    _ours(tmp_path / "same.zip", _comparable(MEMBERS))
    _zipfiles(tmp_path / "theirs.zip", _comparable(MEMBERS))
    assert (tmp_path / "same.zip").read_bytes() == (tmp_path / "theirs.zip").read_bytes()
    # a streamed member's local header says ZIP64 (its sizes come after it, in the extra field)
    headers = _local_headers(tmp_path / "ours.zip")
    for name, _data, _method, streamed in MEMBERS:
        assert (headers[name] == (45, 0xFFFFFFFF, 0xFFFFFFFF)) is streamed, (name, headers[name])
    _ours(tmp_path / "again.zip")  # same data, same zip
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "ours.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "ours.zip") as zf:
        assert [(i.filename, zf.read(i)) for i in zf.infolist()] == [(n, d) for n, d, _m, _s in MEMBERS]
        assert not any(i.flag_bits & 0x08 for i in zf.infolist())  # sizes in every local header
    subprocess.run([require_tool("unzip"), "-tq", str(tmp_path / "ours.zip")], check=True, capture_output=True)
    assert not list(tmp_path.glob("tmp*"))  # the central directory's spool is gone


def test_more_than_65535_members_get_the_zip64_end_records(tmp_path):
    members = [(f"m/{i}.json", b"%d\n" % i, DEFLATED if i % 2 else STORED, i % 3 == 0) for i in range(70_000)]
    _ours(tmp_path / "ours.zip", members)
    _ours(tmp_path / "same.zip", _comparable(members))
    _zipfiles(tmp_path / "theirs.zip", _comparable(members))
    assert (tmp_path / "same.zip").read_bytes() == (tmp_path / "theirs.zip").read_bytes()
    data = (tmp_path / "ours.zip").read_bytes()
    assert b"PK\x06\x06" in data[-200:]
    subprocess.run([require_tool("unzip"), "-tq", str(tmp_path / "ours.zip")], check=True, capture_output=True)
    index = ZipIndex(tmp_path / "ours.zip")
    try:
        assert sum(1 for _ in index.names()) == 70_000
        m = index.get("m/69999.json")
        assert m is not None and index.open(m).read() == b"69999\n"
    finally:
        index.close()


class _SmallLimit(ZipWriter):
    zip64_limit = 1000  # what a zip past 2 GiB gets, on a few kilobytes


def test_zip64_fields_of_sizes_and_offsets_are_written_and_read(tmp_path):
    z = tmp_path / "z64.zip"
    _ours(z, writer=_SmallLimit)
    with zipfile.ZipFile(z) as zf:  # another reader takes them
        assert [(i.filename, zf.read(i)) for i in zf.infolist()] == [(n, d) for n, d, _m, _s in MEMBERS]
    subprocess.run([require_tool("unzip"), "-tq", str(z)], check=True, capture_output=True)
    _check_index(z)


def _check_index(z: Path, prefix: str = "") -> None:
    index = ZipIndex(z)
    try:
        assert [n for n in index.names() if not n.endswith("/")] == [prefix + n for n, _d, _m, _s in MEMBERS]
        for name, data, _m, _s in MEMBERS:
            m = index.get(prefix + name)
            assert m is not None and m.size == len(data)
            with index.open(m) as fh:
                assert fh.read() == data
        assert index.get("nosuch") is None
        with index.open(index.get(prefix + "forms/1/submissions.jsonl")) as fh:  # lines, several open at once
            with index.open(index.get(prefix + "big.bin")) as other:
                assert next(iter(fh)) == b'{"id": 1}\n' and other.read(7) == MEMBERS[5][1][:7]
                assert sum(1 for _ in fh) == 2999
    finally:
        index.close()


def test_zips_from_other_writers_are_read(tmp_path):
    # zipfile to a stream that cannot seek: data descriptors; a comment; bzip2; bytes before the zip
    buf = io.BytesIO()
    with zipfile.ZipFile(_Unseekable(buf), "w") as zf:
        for name, data, method, _s in MEMBERS:
            zf.writestr(name, data, zipfile.ZIP_BZIP2 if name == "a.txt" else method)
        zf.comment = b"PK\x05\x06 a comment that looks like an end record"
    z = tmp_path / "other.zip"
    z.write_bytes(b"#!/bin/sh\nexit 0\n" + buf.getvalue())
    _check_index(z)
    tree = tmp_path / "tree"  # Info-ZIP's zip, with a top folder and its directory entries
    for name, data, _m, _s in MEMBERS:
        (tree / "top" / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / "top" / name).write_bytes(data)
    subprocess.run([require_tool("zip"), "-qr", str(tmp_path / "info.zip"), "top"], cwd=tree, check=True)
    index = ZipIndex(tmp_path / "info.zip")
    try:
        for name, data, _m, _s in MEMBERS:
            assert index.open(index.get("top/" + name)).read() == data
        assert index.ending_with("/manifest.json") == ["top/manifest.json"]
    finally:
        index.close()


class _Unseekable(io.RawIOBase):
    def __init__(self, out: io.BytesIO):
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.out.write(b)


def test_damage_is_an_archive_error(tmp_path):
    z = tmp_path / "z.zip"
    _ours(z)
    data = bytearray(z.read_bytes())
    at = data.index(b"hello") if b"hello" in data else None
    assert at is None  # deflated: flip a byte of the stored photo instead
    photo = MEMBERS[1][1]
    at = bytes(data).index(photo[:50])
    data[at + 100] ^= 0xFF
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    index = ZipIndex(tmp_path / "bad.zip")
    try:
        with pytest.raises(ArchiveError, match="photos/p.jpg is damaged"):
            index.open(index.get("photos/p.jpg")).read()
    finally:
        index.close()
    for cut in (len(data) - 10, len(data) // 2, 0):
        (tmp_path / "cut.zip").write_bytes(bytes(data[:cut]))
        with pytest.raises(ArchiveError):
            ZipIndex(tmp_path / "cut.zip").close()


def test_already_compressed_formats_are_stored():
    assert method_for("a/b.JPG") == STORED and method_for("x.pdf") == STORED and method_for("x.docx") == STORED
    assert method_for("s.jsonl") == DEFLATED and method_for("manifest.json") == DEFLATED and method_for("x") == DEFLATED


PEAK = """
import json, resource, sys
from exporter.connectors.archive.zipindex import ZipIndex
from exporter.connectors.archive.zipwriter import ZipWriter
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "wb") as fh:
    zw = ZipWriter(fh)
    for i in range(n):
        zw.write(f"forms/1/media/{i:08d}/photo-{i}.jpg", b"x" * 20, 0)
    zw.close()
after_write = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
index = ZipIndex(path)
for i in range(0, n, 7):
    assert index.open(index.get(f"forms/1/media/{i:08d}/photo-{i}.jpg")).read() == b"x" * 20
assert sum(1 for _ in index.names()) == n
index.close()
print(json.dumps([after_write, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))
"""


def test_memory_does_not_grow_with_the_number_of_members(tmp_path):
    """zipfile held ~420 bytes per member writing and ~630 reading: 120k members were ~50 MB more
    than 10k. Here the peak is the same within a few MB."""
    peaks = {}
    for n in (10_000, 120_000):
        r = subprocess.run([sys.executable, "-c", PEAK, str(n), str(tmp_path / f"{n}.zip")], capture_output=True,
                           text=True, check=True)
        peaks[n] = json.loads(r.stdout)
    for k in (0, 1):
        assert peaks[120_000][k] - peaks[10_000][k] < 4 * 1024, peaks  # KiB
