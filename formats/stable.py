"""Reproducible files: the same data exported twice gives byte-identical files.

Libraries stamp what they write with the wall clock: the date of every ZIP entry (DOCX, XLSX are
ZIP packages), the core properties of an Office document (created, modified), a PDF's
CreationDate, ModDate and ID. The writers take every such time from the data instead: the
newest update time of what the file holds (``Newest``), or ``EPOCH`` when it holds none.

- ZIP packages: ``DatedZip`` dates every entry it writes (openpyxl writes into one directly);
  ``restamp`` copies a package another library has already written (python-docx) into one.
- PDF: reportlab's invariant mode (no wall clock, an ID derived from the content) plus
  ``pdf_date``, the date formatter of the document's CreationDate/ModDate.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import zipfile
from typing import IO

#: the time of a file that holds no dated data: the earliest a ZIP entry can carry
EPOCH = dt.datetime(1980, 1, 1)
#: the latest a ZIP entry can carry (a later data time, e.g. a "9999-12-31" placeholder, dates it so)
ZIP_LATEST = dt.datetime(2107, 12, 31, 23, 59, 58)
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")


def parse_time(text) -> dt.datetime | None:
    """A served time (``YYYY-MM-DD HH:MM:SS``, or ISO 8601; any offset ignored) or None."""
    m = _TIME.match(str(text or "").strip())
    if not m:
        return None
    try:
        year, month, day, hour, minute, second = (int(g or 0) for g in m.groups())
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


class Newest:
    """The newest of the times added (texts that are no time are ignored); ``EPOCH`` when none."""

    def __init__(self) -> None:
        self._newest: dt.datetime | None = None

    def add(self, text) -> None:
        when = parse_time(text)
        if when is not None and (self._newest is None or when > self._newest):
            self._newest = when

    @property
    def value(self) -> dt.datetime:
        return max(self._newest or EPOCH, EPOCH)

    def reset(self) -> None:
        self._newest = None


def newest(*texts) -> dt.datetime:
    n = Newest()
    for t in texts:
        n.add(t)
    return n.value


class DatedZip(zipfile.ZipFile):
    """A ZIP written with every entry dated ``when`` (instead of the time it was written) and
    its entries deflated."""

    def __init__(self, file, when: dt.datetime):
        super().__init__(file, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self.when = min(when, ZIP_LATEST).timetuple()[:6]

    def dated_info(self, name: str, like: zipfile.ZipInfo | None = None) -> zipfile.ZipInfo:
        """An entry named ``name`` dated ``when`` (compressed like ``like`` when given)."""
        info = zipfile.ZipInfo(name, self.when)
        info.compress_type = like.compress_type if like is not None else self.compression
        info.external_attr = 0o644 << 16
        return info

    def writestr(self, zinfo_or_arcname, data, compress_type=None, compresslevel=None):
        like = zinfo_or_arcname if isinstance(zinfo_or_arcname, zipfile.ZipInfo) else None
        info = self.dated_info(like.filename if like else zinfo_or_arcname, like)
        if compress_type is not None:
            info.compress_type = compress_type
        super().writestr(info, data, compresslevel=compresslevel)

    def write(self, filename, arcname=None, compress_type=None, compresslevel=None):
        info = self.dated_info(arcname or str(filename))
        if compress_type is not None:
            info.compress_type = compress_type
        with open(filename, "rb") as src, self.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def restamp(src: str | IO[bytes], dst: str | IO[bytes], when: dt.datetime) -> None:
    """Copy the ZIP package ``src`` to ``dst`` with every entry dated ``when`` (same names,
    order and compression), one entry at a time."""
    with zipfile.ZipFile(src) as zin, DatedZip(dst, when) as zout:
        for info in zin.infolist():
            with zin.open(info) as fin, zout.open(zout.dated_info(info.filename, info), "w", force_zip64=True) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)


def pdf_date(when: dt.datetime):
    """A reportlab date formatter writing ``when`` (as UTC) whatever time it is given."""
    text = when.strftime("D:%Y%m%d%H%M%S+00'00'")

    def formatter(*_ymdhms) -> str:
        return text

    return formatter
