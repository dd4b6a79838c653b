"""Moving whole files to and from a remote: every call retried, uploads published atomically.

``Transfer`` wraps one ``Remote`` for whoever moves files with it (the remote sink, the backups):

* every remote call goes through ``exporter.retry.retry_call`` (options ``retries``, default 5,
  ``retry_base_delay``, ``retry_max_delay``: ``catalog.TRANSFER_OPTIONS``); a remote that already
  retries each call itself says so with ``retries_itself = True`` (``SelfRetryingRemote``) and is called once;
* ``publish`` uploads a local file atomically: where the remote can rename, bytes go to
  ``<name>.<8 hex>.partial`` in the same folder and are renamed into place, so a reader never sees
  half a file, and a failed upload's temporary name is removed; a remote without rename (object
  stores, whose uploads only appear once complete) receives the file under its final name. Files
  larger than ``Capabilities.max_simple_upload`` go through the remote's upload session
  (``ChunkedRemote``) in ``chunk_size`` pieces;
* ``read`` downloads (``ReadableRemote``), ``listdir`` lists a folder (``ListableRemote``).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from exporter.errors import SinkError
from exporter.naming import short_hash
from exporter.options import parse
from exporter.retry import retry_call

from .base import ChunkedRemote, ListableRemote, ReadableRemote, Remote, RemoteStat, SelfRetryingRemote, TreeRemote
from .catalog import TRANSFER_OPTIONS

log = logging.getLogger("exporter.remote")

#: default chunk for upload sessions: a multiple of Dropbox's 4 MiB and SharePoint's 320 KiB
DEFAULT_CHUNK = 20 * 1024 * 1024
#: length added to a file name by the temporary upload name ``.<8 hex>.partial``
PARTIAL_SUFFIX_LEN = len(".12345678.partial")


class Transfer:
    """One remote, its retries and its atomic uploads. See the module docstring."""

    def __init__(self, remote: Remote, options: dict | None = None):
        options = parse(TRANSFER_OPTIONS, options or {}, strict=False)
        self.remote = remote
        self.name = remote.name
        self.capabilities = remote.capabilities
        self.attempts = options["retries"] + 1
        if isinstance(remote, SelfRetryingRemote) and remote.retries_itself:
            self.attempts = 1  # the remote already retries each call: do not multiply attempts
        self.base_delay = options["retry_base_delay"]
        self.max_delay = 30.0 if options["retry_max_delay"] is None else options["retry_max_delay"]
        self.chunk_size = options["chunk_size"] or DEFAULT_CHUNK
        self.run_id = ""  # mixed into temporary names, so two runs never share one
        self.partials: set[str] = set()  # temporary names that may be left on the remote
        self._dirs: set[str] = set()  # remote folders known to exist
        self._connected = False

    def __repr__(self) -> str:
        return f"Transfer({self.name})"

    def retry(self, fn: Callable[[], Any], describe: str, attempts: int | None = None):
        return retry_call(fn, attempts=attempts or self.attempts, base_delay=self.base_delay,
                          max_delay=self.max_delay, describe=f"{self.name}: {describe}")

    def connect(self) -> None:
        if not self._connected:
            self.retry(self.remote.connect, "connect")
            self._connected = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remote.close()
        self._connected = False

    # ---- single calls ----------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        return self.retry(lambda: self.remote.stat(path), f"stat {path}")

    def delete(self, path: str) -> None:
        self.retry(lambda: self.remote.delete(path), f"remove {path}")

    def read(self, path: str, dest: BinaryIO) -> bool:
        """Download ``path`` into ``dest`` (a retry starts again from where ``dest`` was);
        False when it does not exist."""
        remote = self.remote
        if not isinstance(remote, ReadableRemote):
            raise SinkError("this remote cannot read files back", context=self.name)
        start = dest.tell()

        def attempt() -> bool:
            dest.seek(start)
            dest.truncate()
            return remote.get(path, dest)

        return self.retry(attempt, f"download {path}") is not False

    def listdir(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        """The files directly in folder ``path`` (name, stat), when the remote can list."""
        remote = self.remote
        if not isinstance(remote, ListableRemote):
            raise SinkError("this remote cannot list a folder", context=self.name)
        return iter(self.retry(lambda: list(remote.listdir(path)), f"list {path or '/'}"))

    def walk(self, path: str = "") -> list[tuple[str, RemoteStat]]:
        """Every file under folder ``path`` (relative path, stat), when the remote can list a tree."""
        remote = self.remote
        if not isinstance(remote, TreeRemote):
            raise SinkError("this remote cannot list its files", context=self.name)
        return self.retry(lambda: list(remote.walk(path)), f"list {path or '/'}")

    # ---- uploads ---------------------------------------------------------------------------
    def partial_name(self, remote_rel: str, content_hash: str) -> str:
        folder, _, name = remote_rel.rpartition("/")
        h = short_hash(content_hash + (self.run_id or ""), 8)
        max_name = self.capabilities.max_name_length or 255
        if len(name.encode("utf-8")) + PARTIAL_SUFFIX_LEN > max_name:
            name = short_hash(name, 16)
        tmp = f"{name}.{h}.partial"
        return f"{folder}/{tmp}" if folder else tmp

    def ensure_dir(self, remote_rel: str) -> None:
        folder = remote_rel.rpartition("/")[0]
        if not folder or folder in self._dirs:
            return
        self.retry(lambda: self.remote.mkdir(folder), f"create folder {folder}")
        parts = folder.split("/")
        for i in range(1, len(parts) + 1):
            self._dirs.add("/".join(parts[:i]))

    def _rename(self, src: str, dst: str, size: int) -> None:
        try:
            self.remote.rename(src, dst)
        except SinkError:
            # a retried rename whose first answer was lost: the source is gone, the target is there
            st_src = self.remote.stat(src)
            st_dst = self.remote.stat(dst)
            if st_src is None and st_dst is not None and st_dst.size == size:
                return
            raise

    def _put(self, path: str, local: Path, size: int) -> None:
        caps = self.capabilities
        with open(local, "rb") as fh:
            if caps.max_simple_upload is not None and size > caps.max_simple_upload:
                if not isinstance(self.remote, ChunkedRemote):
                    raise SinkError(f"{local.name} is {size} bytes, more than {self.name} accepts in one "
                                    f"upload ({caps.max_simple_upload}), and it has no upload sessions")
                chunk = min(self.chunk_size, caps.max_simple_upload)
                self.remote.put_chunked(path, fh, size, chunk)
            else:
                self.remote.put(path, fh, size)

    def publish(self, local: Path, remote_rel: str, sha256: str, size: int | None = None) -> None:
        """Upload ``local`` to ``remote_rel`` so that it appears whole or not at all."""
        size = local.stat().st_size if size is None else size
        self.ensure_dir(remote_rel)
        if not self.capabilities.rename:
            # the remote publishes an upload only once it is complete (object stores)
            self.retry(lambda: self._put(remote_rel, local, size), f"upload {remote_rel}")
            return
        tmp = self.partial_name(remote_rel, sha256)
        self.partials.add(tmp)
        try:
            self.retry(lambda: self._put(tmp, local, size), f"upload {remote_rel}")
            self.retry(lambda: self._rename(tmp, remote_rel, size), f"rename into {remote_rel}")
        except BaseException:
            self.drop_partial(tmp)
            raise
        self.partials.discard(tmp)

    def write_small(self, path: str, data: bytes, attempts: int | None = None) -> None:
        """A small file from memory, published the same way."""
        if self.capabilities.rename:
            tmp = self.partial_name(path, hashlib.sha256(data).hexdigest())
            self.partials.add(tmp)
            self.retry(lambda: self.remote.put(tmp, io.BytesIO(data), len(data)), f"upload {tmp}", attempts)
            self.retry(lambda: self._rename(tmp, path, len(data)), f"rename {tmp}", attempts)
            self.partials.discard(tmp)
        else:
            self.retry(lambda: self.remote.put(path, io.BytesIO(data), len(data)), f"upload {path}", attempts)

    def drop_partial(self, tmp: str) -> None:
        try:
            self.retry(lambda: self.remote.delete(tmp), f"remove {tmp}", attempts=2)
            self.partials.discard(tmp)
        except Exception as e:  # noqa: BLE001 - best effort, the original error matters more
            log.warning("%s: could not remove %s: %s", self.name, tmp, e)

    def drop_partials(self) -> None:
        for tmp in list(self.partials):
            self.drop_partial(tmp)
