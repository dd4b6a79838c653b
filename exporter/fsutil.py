"""Atomic local writes: temporary file + fsync + os.replace, never a half-written file.

Temporary names carry the writing process's token (``.<name>.<pid>-<random>-<n>.partial``), and a
directory being written holds a marker naming its owner (``claim``), so that the leftovers of a
run killed outright (SIGKILL, power loss) are removed by the next run (``sweep_dead``) while a live
concurrent run's files are never touched.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
from pathlib import Path
from typing import IO, Iterator

from . import owner

log = logging.getLogger("exporter.fsutil")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mode of published files: what ``open()`` would give (mkstemp alone makes them 0600)
FILE_MODE = 0o666 & ~_read_umask()


_counter = itertools.count()
#: the name of a directory's owner marker: ``.exporter-run.<token>.<n>``, holding ``owner.owner()``
MARKER_PREFIX = ".exporter-run."
TEMP_SUFFIX = ".partial"


def temp_sibling(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` (same file system, so ``os.replace`` is atomic), created
    exclusively with the permissions a normally created file would have. Cheaper than mkstemp
    (no random retries), which matters when a run writes a hundred thousand media files."""
    while True:
        tmp = str(path.parent / f".{path.name[:40]}.{owner.token()}-{next(_counter)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def same_bytes(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two local files hold the same bytes (sizes first, then 1 MiB pieces); False when
    either is missing."""
    try:
        if os.stat(a).st_size != os.stat(b).st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except FileNotFoundError:
        return False


def _replace(tmp: str, path: Path, keep_same: bool) -> bool:
    """Move ``tmp`` onto ``path``; with ``keep_same``, when ``path`` already holds the same bytes
    drop ``tmp`` instead, so an unchanged file is not rewritten (its mtime stays). True when
    ``path`` was replaced."""
    if keep_same and same_bytes(tmp, path):
        os.unlink(tmp)
        return False
    os.replace(tmp, path)
    return True


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                 newline: str | None = None, durable: bool = True, make_parents: bool = True,
                 keep_same: bool = False) -> Iterator[IO]:
    """Write ``path`` through a temporary sibling renamed into place on success.

    On any exception the temporary file is removed and ``path`` is left as it was. With
    ``durable=False`` the file is not fsynced here: the caller makes a whole batch durable at
    once (``sync_all``) before it records any progress, which is much cheaper than one fsync per
    file. Readers never see a partial file either way. With ``keep_same`` a file that already
    holds the same bytes is left untouched.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_sibling(path)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                       newline=newline if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        _replace(tmp, path, keep_same)
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

    def publish(self, keep_same: bool = False) -> bool:
        """Rename the file into place; with ``keep_same`` a target that already holds the same
        bytes is left untouched. True when the target was replaced."""
        self.finish()
        return _replace(self.tmp, self.path, keep_same)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def claim(root: Path) -> Path:
    """Remove what dead runs left in ``root`` (``sweep_dead``), then mark ``root`` as being written
    by this process; ``release`` the returned marker when the run ends (either way)."""
    sweep_dead(root)
    marker = root / f"{MARKER_PREFIX}{owner.token()}.{next(_counter)}"
    with open(marker, "x", encoding="utf-8") as fh:
        fh.write(owner.owner() + "\n")
    return marker


def live_claim(root: Path, mine: Path) -> str | None:
    """The owner of another run of this host that marked ``root`` and still runs, if any (a
    marker of another host cannot be told alive or dead, so it never counts)."""
    try:
        markers = [p for p in root.iterdir() if p.name.startswith(MARKER_PREFIX) and p != mine]
    except OSError:
        return None
    for m in markers:
        try:
            text = m.read_text("utf-8").strip()
        except OSError:
            continue
        if owner.is_local(text) and not owner.is_dead(text):
            return text
    return None


def release(marker: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()


def sweep_dead(root: Path) -> int:
    """Remove the temporary files of every run that marked ``root`` and is dead (its process is
    gone), and their markers. Returns the number of files removed."""
    removed = 0
    try:
        markers = [p for p in root.iterdir() if p.name.startswith(MARKER_PREFIX)]
    except OSError:
        return 0
    for m in markers:
        try:
            text = m.read_text("utf-8").strip()
        except OSError:
            continue
        if not owner.is_dead(text):
            continue
        tok = m.name[len(MARKER_PREFIX):].rpartition(".")[0]
        n = remove_temp_files(root, tok)
        log.info("removed %d temporary files left in %s by a run that stopped without finishing (%s)", n, root, text)
        removed += n
        release(m)
    return removed


def owned_tempdir(prefix: str) -> Path:
    """A new folder in the system's temporary folder, ``<prefix><random>``, holding a marker that
    names its owner; folders of the same prefix whose owner is dead (a killed run's) are removed
    first. For scratch work that ``close`` removes, so that a SIGKILL does not leave it forever."""
    import shutil
    import tempfile

    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for d in base.glob(f"{prefix}*"):
            markers = list(d.glob(f"{MARKER_PREFIX}*")) if d.is_dir() else []
            try:
                dead = bool(markers) and owner.is_dead(markers[0].read_text("utf-8").strip())
            except OSError:
                continue
            if dead:
                log.info("removing %s, left by a run that stopped without finishing", d)
                shutil.rmtree(d, ignore_errors=True)
    d = Path(tempfile.mkdtemp(prefix=prefix))
    (d / f"{MARKER_PREFIX}{owner.token()}").write_text(owner.owner() + "\n", "utf-8")
    return d


def remove_temp_files(root: Path, tok: str | None = None) -> int:
    """Remove every temporary file below ``root`` named with the token ``tok`` (default: this
    process's own). Symbolic links to folders are not followed."""
    tok = tok or owner.token()
    mark = f".{tok}-"
    n = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(TEMP_SUFFIX) and mark in name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    n += 1
    return n


class StopAfterError:
    """A binary file for a library that writes a zip container and, when a write fails, leaves
    its ``ZipFile`` to the garbage collector (python-docx): after the first error every further
    call does nothing, so the late ``ZipFile.__del__`` cannot fail a second time ("Exception
    ignored ...") once the real error is on its way. The caller closes the real file."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh
        self._failed = False
        self._pos = 0  # the position last known: what ``tell`` says once failed

    def _call(self, name: str, *args):
        if self._failed:
            return self._pos if name != "write" else len(args[0])
        try:
            return getattr(self._fh, name)(*args)
        except BaseException:
            self._failed = True
            raise

    def write(self, data) -> int:
        n = self._call("write", data)
        if not self._failed:
            self._pos += len(data)
        return n

    def seek(self, *args) -> int:
        pos = self._call("seek", *args)
        if not self._failed:
            self._pos = pos
        return pos

    def tell(self) -> int:
        pos = self._call("tell")
        if not self._failed:
            self._pos = pos
        return pos

    def flush(self) -> None:
        self._call("flush")

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._failed = True


def remove_path(p: Path) -> None:
    """Remove a file, a symbolic link (never what it points to) or a folder's whole tree; nothing
    when it is not there."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    except FileNotFoundError:
        pass


def fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync_all() -> None:
    """Make every file written so far durable (one ``sync`` for a whole batch of files)."""
    os.sync()


def file_digest(path: str | os.PathLike, kind: str = "sha256") -> str:
    """Hex digest (``sha256``, ``md5``, ``sha1``...) of a local file, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.new(kind)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
