"""Write a zip whose central directory waits in a temporary file, not in memory.

Python's ``zipfile`` keeps an object per member (about 420 bytes) until it writes the central
directory at the end, and an account archive has about two files per submission: its memory grew
with the account. This writer appends each member's central directory record to a temporary file
when the member is finished and copies that file after the last member, so its memory is the same
for ten files or a million.

The bytes are those ``zipfile`` writes for the same members (``writestr`` for ``write``,
``open(..., "w", force_zip64=True)`` for ``open``: the same headers, versions, ZIP64 rules and
limits), so zips written before and after this module are alike, and same data gives the same zip.
Every member has a fixed date (1980-01-01), mode 0644 and is stored or deflated. Every local header
carries its member's CRC and sizes (no data descriptor), so the zip also reads as a stream; a
streamed member's header is written with a ZIP64 extra (its size is not known yet) and completed
when it is closed, which needs a seekable output.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from typing import BinaryIO

STORED, DEFLATED = 0, 8
#: sizes and offsets above this get ZIP64 fields, as ``zipfile`` decides (readers that take them as
#: signed 32-bit numbers are common)
ZIP64_LIMIT = (1 << 31) - 1
_COUNT_LIMIT = 0xFFFF
#: the zip format's records (APPNOTE 4.3): local header, central directory entry, end of central
#: directory, and ZIP64's end record and its locator; ``zipindex`` reads the same
LOCAL = struct.Struct("<4s2B4HL2L2H")
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
END = struct.Struct("<4s4H2LH")
END64 = struct.Struct("<4sQ2H2L4Q")
LOCATOR64 = struct.Struct("<4sLQL")
_SIZES64 = struct.Struct("<HHQQ")
_DOS_DATE, _DOS_TIME = (1980 - 1980) << 9 | 1 << 5 | 1, 0  # 1980-01-01 00:00:00
_UTF8_NAME = 0x800
_UNIX, _VERSION, _VERSION64 = 3, 20, 45
_MODE = 0o644 << 16


#: suffixes of formats that are compressed already: deflating them again costs time and gains nothing
STORED_SUFFIXES = frozenset(
    ".jpg .jpeg .png .gif .webp .heic .heif .avif .mp4 .m4a .mp3 .mov .webm .ogg .pdf .zip .gz .bz2 .xz .7z "
    ".docx .xlsx .pptx .odt .ods".split())


def method_for(name: str) -> int:
    """How a member is kept: stored when its suffix says it is compressed already, else deflated."""
    return STORED if os.path.splitext(name)[1].lower() in STORED_SUFFIXES else DEFLATED


def _encoded(name: str) -> tuple[bytes, int]:
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _UTF8_NAME


def _compressor(method: int) -> zlib._Compress | None:
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if method == DEFLATED else None


class ZipWriter:
    """Members added one at a time (``write`` or ``open``), then ``close`` writes the central
    directory and the end records. ``fh`` is a seekable binary file positioned at its start, which
    the caller closes; ``spool_dir`` is where the central directory waits (the system's temporary
    folder by default)."""

    #: sizes and offsets above this get ZIP64 fields
    zip64_limit = ZIP64_LIMIT

    def __init__(self, fh: BinaryIO, *, spool_dir: str | None = None) -> None:
        self._fh = fh
        self._cd = tempfile.TemporaryFile(dir=spool_dir)
        self._pos = 0  # where the next member starts (kept here: asking the file is a system call)
        self._count = 0
        self._busy = False

    def write(self, name: str, data: bytes, method: int = DEFLATED) -> None:
        """A member whose bytes are all in hand."""
        self._check()
        crc = zlib.crc32(data)
        packed = data
        if (c := _compressor(method)) is not None:
            packed = c.compress(data) + c.flush()
        offset = self._pos
        zip64 = len(data) * 1.05 > self.zip64_limit  # zipfile's guess when the size is known beforehand
        header = self._local(name, method, crc, len(packed), len(data), zip64)
        self._fh.write(header)
        self._fh.write(packed)
        self._pos += len(header) + len(packed)
        self._central(name, method, crc, len(packed), len(data), offset, zip64)

    def open(self, name: str, method: int = DEFLATED) -> MemberWriter:
        """A member streamed in by ``write`` calls on what is returned, finished by its ``close``
        (one member at a time)."""
        self._check()
        self._busy = True
        header = self._local(name, method, 0, 0, 0, True)
        self._fh.write(header)
        member = MemberWriter(self, name, method, self._pos)
        self._pos += len(header)
        return member

    def close(self) -> None:
        """The central directory and end records after the last member."""
        self._check()
        start, size = self._pos, self._cd.tell()
        self._cd.seek(0)
        shutil.copyfileobj(self._cd, self._fh, 1 << 20)
        self._cd.close()
        count = self._count
        if count > _COUNT_LIMIT or start > self.zip64_limit or size > self.zip64_limit:
            self._fh.write(END64.pack(b"PK\x06\x06", 44, _VERSION64, _VERSION64, 0, 0, count, count, size, start))
            self._fh.write(LOCATOR64.pack(b"PK\x06\x07", 0, start + size, 1))
            count, size, start = min(count, _COUNT_LIMIT), min(size, 0xFFFFFFFF), min(start, 0xFFFFFFFF)
        self._fh.write(END.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0))
        self._fh.flush()

    def abort(self) -> None:
        """Drop the central directory (the caller removes the output); nothing after ``close``."""
        self._cd.close()

    def _check(self) -> None:
        if self._busy:
            raise ValueError("a member is still being written: close it first")
        if self._cd.closed:
            raise ValueError("the zip is closed")

    @staticmethod
    def _local(name: str, method: int, crc: int, packed: int, size: int, zip64: bool) -> bytes:
        raw, flags = _encoded(name)
        extra = _SIZES64.pack(1, 16, size, packed) if zip64 else b""
        if zip64:
            packed = size = 0xFFFFFFFF
        version = _VERSION64 if zip64 else _VERSION
        return LOCAL.pack(b"PK\x03\x04", version, 0, flags, method, _DOS_TIME, _DOS_DATE, crc, packed, size,
                           len(raw), len(extra)) + raw + extra

    def _central(self, name: str, method: int, crc: int, packed: int, size: int, offset: int, zip64: bool) -> None:
        raw, flags = _encoded(name)
        big = [size, packed] if size > self.zip64_limit or packed > self.zip64_limit else []
        if big:
            size = packed = 0xFFFFFFFF
        if offset > self.zip64_limit:
            big.append(offset)
            offset = 0xFFFFFFFF
        extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
        version = _VERSION64 if zip64 or big else _VERSION
        self._cd.write(CENTRAL.pack(b"PK\x01\x02", version, _UNIX, version, 0, flags, method, _DOS_TIME, _DOS_DATE,
                                     crc, packed, size, len(raw), len(extra), 0, 0, 0, _MODE, offset) + raw + extra)
        self._count += 1


class MemberWriter:
    """One streamed member of a ``ZipWriter``: ``write`` its bytes, ``close`` it (or use it as a
    context manager)."""

    def __init__(self, zw: ZipWriter, name: str, method: int, offset: int) -> None:
        self._zw, self._name, self._method, self._offset = zw, name, method, offset
        self._compress = _compressor(method)
        self._crc = self._size = self._packed = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        n = len(data)
        self._crc = zlib.crc32(data, self._crc)
        self._size += n
        if self._compress is not None:
            data = self._compress.compress(data)
        self._zw._fh.write(data)
        self._packed += len(data)
        return n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        zw, fh = self._zw, self._zw._fh
        if self._compress is not None:
            tail = self._compress.flush()
            fh.write(tail)
            self._packed += len(tail)
        zw._pos += self._packed
        fh.seek(self._offset)  # the header again, now with the CRC and sizes
        fh.write(zw._local(self._name, self._method, self._crc, self._packed, self._size, True))
        fh.seek(zw._pos)
        zw._busy = False
        zw._central(self._name, self._method, self._crc, self._packed, self._size, self._offset, True)

    def __enter__(self) -> MemberWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # the zip is abandoned: no header to complete
            self.closed = True
            self._zw._busy = False
