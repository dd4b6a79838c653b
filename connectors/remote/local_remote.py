"""A local folder behind the ``Remote`` interface: where backups go when their destination is a
plain path or ``file:///abs/path`` (an export to a folder is the files destination's job).

Uploads are made durable (``fsync``) before they are renamed into place (``os.replace``, then the
folder is synced), so a backup that is listed is whole on disk.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, os_error_text
from exporter.fsutil import FILE_MODE, fsync_dir

from .base import RemoteStat
from .catalog import LOCAL
from .common import split_path

T = TypeVar("T")


class LocalRemote:
    """A folder of this machine (created on ``connect``)."""

    capabilities = Capabilities(max_path_length=4096, max_name_length=255, rename=True, checksum=None,
                                tested="a temporary folder")

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(Path(root).expanduser().absolute())
        self.name = f"file://{self.root}"

    def __repr__(self) -> str:
        return f"LocalRemote({self.root})"

    def _p(self, path: str) -> Path:
        return Path(self.root, *split_path(path, self.name))

    def _os(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except OSError as e:
            raise SinkError(os_error_text(e, what), context=self.name) from None

    def connect(self) -> None:
        self._os("create the folder", lambda: Path(self.root).mkdir(parents=True, exist_ok=True))

    def close(self) -> None:
        pass

    def stat(self, path: str) -> RemoteStat | None:
        p = self._p(path)
        return RemoteStat(p.stat().st_size) if p.is_file() else None

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        p = self._p(path)

        def write() -> None:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            with open(fd, "wb") as fh:
                shutil.copyfileobj(data, fh, 1 << 20)
                fh.flush()
                os.fsync(fh.fileno())
                written = fh.tell()
            if written != size:
                raise SinkError(f"{p} is {written} bytes after writing, expected {size}", context=self.name)

        self._os(f"write {p}", write)

    def get(self, path: str, dest: BinaryIO) -> bool:
        p = self._p(path)
        if not p.is_file():
            return False
        with self._os(f"read {p}", lambda: open(p, "rb")) as fh:
            shutil.copyfileobj(fh, dest, 1 << 20)
        return True

    def mkdir(self, path: str) -> None:
        self._os(f"create folder {path}", lambda: self._p(path).mkdir(parents=True, exist_ok=True))

    def rename(self, src: str, dst: str) -> None:
        a, b = self._p(src), self._p(dst)
        self._os(f"rename {a} to {b}", lambda: os.replace(a, b))
        fsync_dir(b.parent)

    def delete(self, path: str) -> None:
        p = self._p(path)
        self._os(f"remove {p}", lambda: p.unlink(missing_ok=True))

    def listdir(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        folder = self._p(path)
        if not folder.is_dir():
            return
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False):
                yield entry.name, RemoteStat(entry.stat().st_size)

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        folder = self._p(path)
        if not folder.is_dir():
            return
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.is_symlink():
                yield p.relative_to(folder).as_posix(), RemoteStat(p.stat().st_size)


def create_remote(url: str, options: dict | None = None) -> LocalRemote:
    """``file:///abs/path`` (or a plain path) -> a LocalRemote (it takes no options)."""
    from exporter.connectors.files import path_of

    LOCAL.parse_options(options or {})
    path = path_of(url)
    if not path:
        raise ConfigError(f"no folder in {url!r}")
    return LocalRemote(path)
