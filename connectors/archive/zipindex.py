"""Read a zip whose central directory stays on disk, not in memory.

Python's ``zipfile`` parses the whole central directory into an object per member (about 630
bytes each) when it opens a zip: an account archive has about two files per submission, so the
memory of a verify or a restore grew with the account. Here the central directory is read in
1 MiB pieces from the end-of-central-directory record (ZIP64 included) into a table of a private
temporary SQLite database (on disk, removed when closed; its cache is a couple of MiB), which
answers the lookups by name. A member is read with ``os.pread`` from its local header, so several
can be open at once, inflated as it is read, its CRC and size checked at its end.

Any standard zip is taken (a comment, bytes before the zip, ZIP64, data descriptors, UTF-8 or
CP437 names, stored, deflated or bzip2 members); encrypted members are refused. A name given twice is the last one's,
as ``zipfile`` has it.
"""
from __future__ import annotations

import bz2
import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from exporter.errors import ArchiveError

from .zipwriter import CENTRAL, DEFLATED, END, END64, LOCAL, LOCATOR64, STORED

_PIECE = 1 << 20
_BATCH = 2000
BZIP2 = 12


class Member(NamedTuple):
    name: str
    offset: int  # of its local header
    method: int
    flags: int
    packed: int
    size: int
    crc: int


def _end_record(fh: IO[bytes], path: Path) -> tuple[int, int, int]:
    """(offset of the central directory, its size, the bytes before the zip) from the end records."""
    fh.seek(0, os.SEEK_END)
    total = fh.tell()
    tail_start = max(0, total - (1 << 16) - END.size)
    fh.seek(tail_start)
    tail = fh.read()
    at = len(tail)
    while True:  # the last signature whose record and comment fit (another may lie in the comment)
        at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise ArchiveError(f"{path} is not a zip archive")
        if at + END.size <= len(tail) and at + END.size + END.unpack_from(tail, at)[-1] <= len(tail):
            break
    _sig, _disk, _cd_disk, _n, _count, size, offset, _comment = END.unpack_from(tail, at)
    where = tail_start + at
    loc = at - LOCATOR64.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        rec = loc - END64.size
        if rec >= 0:
            head = tail[rec:rec + END64.size]
        else:  # (a comment of nearly 64 KiB)
            fh.seek(max(0, tail_start + rec))
            head = fh.read(END64.size) if tail_start + rec >= 0 else b""
        if len(head) != END64.size or head[:4] != b"PK\x06\x06":
            raise ArchiveError(f"{path}: damaged ZIP64 end record")
        size, offset = END64.unpack(head)[-2:]
        where = tail_start + rec
    concat = where - size - offset
    if concat < 0:
        raise ArchiveError(f"{path}: the central directory lies outside the file (truncated?)")
    return offset + concat, size, concat


def _zip64(extra: bytes, size: int, packed: int, offset: int) -> tuple[int, int, int]:
    """The sizes and offset of a central directory entry, with its ZIP64 extra field applied."""
    i = 0
    while i + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, i)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, i + 4))
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if packed == 0xFFFFFFFF and values:
                packed = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        i += 4 + length
    return size, packed, offset


def _name(raw: bytes) -> str:
    """A member's name: UTF-8, flagged so or not (``zip`` on Linux writes UTF-8 names unflagged), else
    CP437 (the zip format's default, which ``zipfile`` assumes for every unflagged name)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("cp437")
    return name.split("\x00", 1)[0]


def _entries(fd: int, start: int, length: int, concat: int, path: Path) -> Iterator[Member]:
    """Every entry of the central directory, read in 1 MiB pieces (``os.pread``: walks and reads
    of members can go side by side)."""
    buf, i, pos, end = b"", 0, start, start + length
    while True:
        if len(buf) - i < CENTRAL.size and pos < end:
            buf = buf[i:] + os.pread(fd, min(_PIECE, end - pos), pos)
            pos, i = min(end, pos + _PIECE), 0
        if len(buf) - i < CENTRAL.size:
            if len(buf) - i:
                raise ArchiveError(f"{path}: the central directory is truncated")
            return
        (sig, _cv, _cs, _xv, _r, flags, method, _t, _d, crc, packed, size, n_name, n_extra, n_comment, _disk, _ia,
         _ea, offset) = CENTRAL.unpack_from(buf, i)
        if sig != b"PK\x01\x02":
            raise ArchiveError(f"{path}: damaged central directory")
        need = CENTRAL.size + n_name + n_extra + n_comment
        if len(buf) - i < need:
            if pos >= end:
                raise ArchiveError(f"{path}: the central directory is truncated")
            buf = buf[i:] + os.pread(fd, min(_PIECE, end - pos), pos)
            pos, i = min(end, pos + _PIECE), 0
            continue
        raw = buf[i + CENTRAL.size:i + CENTRAL.size + n_name]
        extra = buf[i + CENTRAL.size + n_name:i + CENTRAL.size + n_name + n_extra]
        i += need
        name = _name(raw)
        if 0xFFFFFFFF in (size, packed, offset):
            size, packed, offset = _zip64(extra, size, packed, offset)
        yield Member(name, offset + concat, method, flags, packed, size, crc)


class ZipIndex:
    """A zip's members by name, from a table on disk."""

    def __init__(self, path: str | os.PathLike) -> None:
        import sqlite3  # (a zip archive's only: a folder's reader never needs it)

        self.path = Path(path)
        self._last: tuple[str | None, Member | None] = (None, None)
        self._fh = open(self.path, "rb")
        try:
            self._cd = _end_record(self._fh, self.path)
            # "": a private temporary database, on disk once past its cache, deleted when closed
            self._db = sqlite3.connect("", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("CREATE TABLE m (name TEXT PRIMARY KEY, offset INTEGER, method INTEGER, "
                             "flags INTEGER, packed INTEGER, size INTEGER, crc INTEGER) WITHOUT ROWID")
            batch: list[Member] = []
            for m in self._walk():
                batch.append(m)
                if len(batch) >= _BATCH:
                    self._db.executemany("INSERT OR REPLACE INTO m VALUES (?,?,?,?,?,?,?)", batch)
                    batch.clear()
            self._db.executemany("INSERT OR REPLACE INTO m VALUES (?,?,?,?,?,?,?)", batch)
        except BaseException:
            self.close()
            raise

    def _walk(self) -> Iterator[Member]:
        return _entries(self._fh.fileno(), *self._cd, self.path)

    def close(self) -> None:
        self._fh.close()
        if hasattr(self, "_db"):
            self._db.close()

    def get(self, name: str) -> Member | None:
        last = self._last  # (one read: another thread may replace it)
        if name == last[0]:  # asked again at once (whether it exists, then open it)
            return last[1]
        row = self._db.execute("SELECT * FROM m WHERE name=?", (name,)).fetchone()
        member = Member(*row) if row else None
        self._last = (name, member)
        return member

    def names(self) -> Iterator[str]:
        """Every member's name, in the zip's order (read again from the central directory)."""
        for m in self._walk():  # (a generator of this object's: the file stays open while it runs)
            yield m.name

    def ending_with(self, suffix: str) -> list[str]:
        return [n for (n,) in self._db.execute("SELECT name FROM m WHERE substr(name, ?) = ?", (-len(suffix), suffix))]

    def open(self, m: Member) -> IO[bytes]:
        """The member's bytes, as a buffered binary file (lines, ``read(n)``)."""
        if m.flags & 0x1:
            raise ArchiveError(f"{m.name} is encrypted in {self.path}: not supported")
        if m.method not in (STORED, DEFLATED, BZIP2):
            raise ArchiveError(f"{m.name} is compressed with method {m.method} in {self.path}: not supported")
        fd = self._fh.fileno()
        head = os.pread(fd, LOCAL.size, m.offset)
        if len(head) != LOCAL.size or head[:4] != b"PK\x03\x04":
            raise ArchiveError(f"{self.path}: bad local header for {m.name}")
        n_name, n_extra = LOCAL.unpack(head)[-2:]
        return io.BufferedReader(_Reader(fd, m, m.offset + LOCAL.size + n_name + n_extra, self.path), 1 << 16)


class _Reader(io.RawIOBase):
    """One member's bytes, inflated as read; the CRC and size checked at the end."""

    def __init__(self, fd: int, m: Member, start: int, path: Path) -> None:
        self._fd, self._m, self._pos, self._left, self._path = fd, m, start, m.packed, path
        self._crc, self._out = 0, 0
        self._inflate = (zlib.decompressobj(-15) if m.method == DEFLATED
                         else bz2.BZ2Decompressor() if m.method == BZIP2 else None)
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _raw(self, n: int) -> bytes:
        data = os.pread(self._fd, min(n, self._left), self._pos) if self._left else b""
        if self._left and not data:
            raise ArchiveError(f"{self._m.name} is truncated in {self._path}")
        self._pos += len(data)
        self._left -= len(data)
        return data

    def _next(self, want: int) -> bytes:
        """Up to about ``want`` more bytes of the member (b"" at its end)."""
        d = self._inflate
        if d is None:
            return self._raw(want)
        if isinstance(d, bz2.BZ2Decompressor):
            while not d.eof and (self._left or not d.needs_input):
                if out := d.decompress(self._raw(_PIECE) if d.needs_input else b"", want):
                    return out
            return b""
        while self._left or d.unconsumed_tail:
            if out := d.decompress(d.unconsumed_tail or self._raw(1 << 16), want):
                return out
        return d.flush()  # what the last input still held

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            if self._done or not len(b):
                return 0
            self._pending = self._next(len(b))
            if not self._pending:
                self._end()
                return 0
            self._crc = zlib.crc32(self._pending, self._crc)
            self._out += len(self._pending)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _end(self) -> None:
        self._done = True
        if self._out != self._m.size or self._crc != self._m.crc:
            raise ArchiveError(f"{self._m.name} is damaged in {self._path} ({self._out} bytes read, {self._m.size} "
                               f"expected; CRC {'matches' if self._crc == self._m.crc else 'differs'})")
