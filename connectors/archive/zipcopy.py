"""Copy an account archive (a folder or a zip) into a new zip, every file as it is.

What a backup of an archive does: the files the manifest lists are copied byte for byte, in the
manifest's order, and the manifest itself last, so the copy is the same archive (same format
version, same ``exported_at``, same hashes) and verifies as it did. Nothing is parsed or written
again, which is what makes it fast: the pipeline (archive -> source -> archive sink) would rewrite
every submission, and upgrade the format. The copy is not checked here: the caller verifies what
was written (``verify``), which re-hashes every file against the copied manifest.

The zip is written by ``zipwriter`` (members with a fixed date, already-compressed files stored,
the rest deflated; its central directory waits on disk, so memory does not grow with the number of
files). A file of up to ``WHOLE`` bytes is read whole and written in one call; a larger one streams
in 1 MiB pieces. Every local header carries its member's sizes and CRC (no data descriptor), so the
zip can also be read as a stream (``age -d ... | bsdtar -x``, Java's ZipInputStream).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from exporter.errors import ArchiveError, os_error_text

from .layout import MANIFEST
from .reader import ArchiveReader
from .zipwriter import ZipWriter, method_for

#: files up to this size are read whole (memory holds one of them at a time)
WHOLE = 1 << 20


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
        with fh:
            zw = ZipWriter(fh, spool_dir=str(target.parent))
            try:
                copied = 0
                for rel, _want in reader.iter_files():
                    if rel == MANIFEST:  # a manifest listing itself (by hand): it goes last, once
                        continue
                    _copy(reader, zw, rel, whole)
                    copied += 1
                _copy(reader, zw, MANIFEST, whole)
                zw.close()
            finally:
                zw.abort()
        return copied + 1
    except BaseException as e:
        target.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ArchiveError(os_error_text(e, f"copy the archive {source} into {target}")) from None
        raise
    finally:
        reader.close()


def _copy(reader: ArchiveReader, zw: ZipWriter, rel: str, whole: int) -> None:
    method = method_for(rel)
    with reader.open(rel) as src:
        data = src.read(whole + 1)
        if len(data) <= whole:
            zw.write(rel, data, method)
            return
        with zw.open(rel, method) as dst:
            dst.write(data)
            del data
            shutil.copyfileobj(src, dst, 1 << 20)
