"""The one small interface every remote implements, and its optional abilities.

Required (``Remote``): ``stat``, ``put``, ``mkdir``, ``rename``, ``delete``. Optional abilities are
separate protocols detected at run time (``ChunkedRemote`` for resumable upload sessions,
``ReadableRemote`` to read a file back, ``ListableRemote`` to list a folder, ``TreeRemote`` to
list a whole tree, ``SelfRetryingRemote``,
``RootedRemote``); no remote
stubs what it cannot do. Each remote declares its limits as ``Capabilities`` (path length, forbidden
characters, largest simple upload, checksum kind), which the remote sink reads to plan names and
uploads. Paths are POSIX-style, relative to the remote root given in the URL.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from exporter.capabilities import Capabilities
from exporter.fsutil import file_digest


@dataclass(frozen=True)
class RemoteStat:
    size: int
    #: checksum in the remote's own kind (``Capabilities.checksum``), None when it exposes none
    checksum: str | None = None


@runtime_checkable
class Remote(Protocol):
    capabilities: Capabilities
    name: str  # for messages, secrets masked

    def connect(self) -> None: ...

    def stat(self, path: str) -> RemoteStat | None:
        """Size (and checksum when the remote has one) of ``path``, None if it does not exist."""

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        """Upload ``size`` bytes from ``data`` to ``path`` (creating or replacing it)."""

    def mkdir(self, path: str) -> None:
        """Create ``path`` and its parents; no error if it exists."""

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``, replacing ``dst``."""

    def delete(self, path: str) -> None:
        """Remove a file; no error if it does not exist."""

    def close(self) -> None: ...


@runtime_checkable
class ChunkedRemote(Protocol):
    """A remote with resumable upload sessions (Dropbox, SharePoint)."""

    def put_chunked(self, path: str, data: BinaryIO, size: int, chunk_size: int) -> None: ...


@runtime_checkable
class ReadableRemote(Protocol):
    """A remote that can read a small file back. The remote sink keeps its incremental state
    (``.exporter-state.json``) and, for remotes without checksums, its upload manifest
    (``.exporter-manifest.json``) on the remote; without ``get`` it works without them."""

    def get(self, path: str, dest: BinaryIO) -> bool:
        """Write the bytes of ``path`` into ``dest``; return False when it does not exist."""


@runtime_checkable
class SelfRetryingRemote(Protocol):
    """A remote whose client may retry each call itself (``retries_itself`` true: Dropbox and
    SharePoint, whose SDK sessions do): the remote sink then does not multiply the attempts."""

    retries_itself: bool


@runtime_checkable
class RootedRemote(Protocol):
    """A remote that reports the folder its paths are relative to (``root``, final once connected):
    the remote sink counts it in the path length its capabilities allow."""

    root: str


@runtime_checkable
class ListableRemote(Protocol):
    """A remote that can list the files of a folder (the backups find their leftovers with it)."""

    def listdir(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        """(name, stat) of each file directly in folder ``path`` (sub-folders left out); nothing
        when the folder does not exist."""


@runtime_checkable
class TreeRemote(Protocol):
    """A remote that can list every file under a folder, sub-folders included (``exporter forget``
    finds a person's files with it)."""

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        """(path relative to ``path``, stat) of every file under folder ``path``, in any order;
        nothing when the folder does not exist."""


def local_checksum(kind: str | None, path) -> str | None:
    """Compute a local file's checksum in the remote's kind, to skip identical files."""
    import hashlib

    if kind is None:
        return None
    if kind in ("sha256", "md5", "sha1"):
        return file_digest(path, kind)
    if kind == "dropbox":  # Dropbox content hash: sha256 of the concatenated sha256 of 4 MiB blocks
        outer = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(4 * 1024 * 1024):
                outer.update(hashlib.sha256(block).digest())
        return outer.hexdigest()
    raise ValueError(f"unknown checksum kind {kind!r}")
