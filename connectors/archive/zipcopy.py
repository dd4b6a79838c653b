"""Copy an account archive (a folder or a zip) into a new zip, every file as it is.

What a backup of an archive does: the files the manifest lists are copied byte for byte, in the
manifest's order, and the manifest itself last, so the copy is the same archive (same format
version, same ``exported_at``, same hashes) and verifies as it did. Nothing is parsed or written
again, which is what makes it fast: the pipeline (archive -> source -> archive sink) would rewrite
every submission, and upgrade the format. The copy is not checked here: the caller verifies what
was written (``verify``), which re-hashes every file against the copied manifest.

Members carry a fixed date (1980-01-01, as the archive format says). Files whose bytes are
already compressed (photos, PDFs, office documents, archives: by their suffix) are stored, the
rest deflated. A file of up to ``WHOLE`` bytes is read whole and written in one call; a larger one
streams in 1 MiB pieces. Every local header carries its member's sizes and CRC (no data descriptor),
so the zip can also be read as a stream (``age -d ... | bsdtar -x``, Java's ZipInputStream).
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from exporter.errors import ArchiveError, os_error_text

from .layout import MANIFEST
from .reader import ArchiveReader

#: files up to this size are read whole (memory holds one of them at a time)
WHOLE = 1 << 20
#: suffixes of formats that are compressed already: deflating them again costs time and gains nothing
STORED_SUFFIXES = frozenset(
    ".jpg .jpeg .png .gif .webp .heic .heif .avif .mp4 .m4a .mp3 .mov .webm .ogg .pdf .zip .gz .bz2 .xz .7z "
    ".docx .xlsx .pptx .odt .ods".split())
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def compress_type(rel: str) -> int:
    """How a member is kept: stored when its suffix says it is compressed already, else deflated."""
    return zipfile.ZIP_STORED if os.path.splitext(rel)[1].lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED


def member(rel: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(rel, FIXED_DATE)
    info.compress_type = compress_type(rel)
    info.external_attr = 0o644 << 16
    return info


def copy_to_zip(source: str | os.PathLike, target: str | os.PathLike, *, whole: int = WHOLE) -> int:
    """Write the archive at ``source`` into the new zip ``target`` (refused if it exists), manifest
    last: the number of files copied, manifest included. A file the manifest lists but the archive
    lacks is an ArchiveError; on any error ``target`` is removed. Files up to ``whole`` bytes are
    read whole. The copy is not fsynced: it is a backup's scratch copy, which is verified, encrypted
    and uploaded at once (the destination makes its own copy durable)."""
    target = Path(target)
    reader = ArchiveReader(source)
    try:
        fh = open(target, "xb")
    except OSError as e:
        reader.close()
        raise ArchiveError(os_error_text(e, f"create {target}")) from None
    try:
        with fh, zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
            copied = 0
            for rel, _want in reader.iter_files():
                if rel == MANIFEST:  # a manifest listing itself (by hand): it goes last, once
                    continue
                _copy(reader, zf, rel, whole)
                copied += 1
            _copy(reader, zf, MANIFEST, whole)
        return copied + 1
    except BaseException as e:
        target.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ArchiveError(os_error_text(e, f"copy the archive {source} into {target}")) from None
        raise
    finally:
        reader.close()


def _copy(reader: ArchiveReader, zf: zipfile.ZipFile, rel: str, whole: int) -> None:
    info = member(rel)
    with reader.open(rel) as src:
        data = src.read(whole + 1)
        if len(data) <= whole:
            zf.writestr(info, data)
            return
        with zf.open(info, "w", force_zip64=True) as dst:
            dst.write(data)
            del data
            shutil.copyfileobj(src, dst, 1 << 20)
