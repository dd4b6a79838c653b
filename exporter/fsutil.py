"""Atomic local writes: temporary file + fsync + os.replace, never a half-written file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mode of published files: what ``open()`` would give (mkstemp alone makes them 0600)
FILE_MODE = 0o666 & ~_read_umask()


def temp_sibling(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` (same file system, so ``os.replace`` is atomic), with
    the permissions a normally created file would have."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".partial", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                 newline: str | None = None) -> Iterator[IO]:
    """Write ``path`` through a temporary sibling renamed into place on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_sibling(path)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                       newline=newline if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class PendingFile:
    """A file written over a whole run (e.g. one CSV per form), published only by ``publish()``.

    ``discard()`` removes it; nothing is ever visible under the final name until it is complete.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = temp_sibling(self.path)
        binary = "b" in mode
        self.fh = os.fdopen(fd, mode, encoding=None if binary else encoding,
                            newline=None if binary else newline)

    def finish(self) -> None:
        """Flush, fsync and close the handle now (frees the descriptor); ``publish()`` later
        only renames. Lets a writer keep one open file per form, not one per form of the run."""
        if not self.fh.closed:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()

    def publish(self) -> Path:
        self.finish()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
