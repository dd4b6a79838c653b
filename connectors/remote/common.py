"""Helpers shared by the remote implementations (not part of the ``Remote`` interface).

* for the object stores (S3, Azure): their upload and retry settings (``object_store_settings``);
* for the SDK remotes (Dropbox, SharePoint): reading a local stream at an offset to resume an
  upload session (``OffsetReader``), the upload and retry options (``upload_options``), checks of
  one path component (``check_name_part``) and the translation of ``requests`` transport errors
  (``translate_transport_error``);
* for the server remotes (FTP/FTPS, SFTP): one connection used through ``_call`` and dropped after
  a transient failure (``ConnectedRemote``), host and port from the URL (``host_and_port``) and
  the capabilities the options may override (``server_capabilities``).
"""
from __future__ import annotations

import abc
import posixpath
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar
from urllib.parse import SplitResult

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.retry import retry_call

T = TypeVar("T")
MiB = 1024 * 1024


# ---- SDK remotes (Dropbox, SharePoint) ------------------------------------------------------
class OffsetReader:
    """Read ``n`` bytes at an offset: seeks when possible, otherwise only moves forward."""

    def __init__(self, data: BinaryIO, where: str):
        self._data = data
        self._where = where
        try:
            self._seekable = bool(data.seekable())
        except (AttributeError, OSError):
            self._seekable = False
        self._base = data.tell() if self._seekable else 0
        self._pos = 0

    def read_at(self, offset: int, n: int) -> bytes:
        if self._seekable:
            self._data.seek(self._base + offset)
        elif offset < self._pos:
            raise SinkError("cannot resume the upload: the local stream cannot go back", context=self._where)
        else:
            while self._pos < offset:
                skipped = self._data.read(min(offset - self._pos, MiB))
                if not skipped:
                    break
                self._pos += len(skipped)
        buf = self._data.read(n)
        self._pos = offset + len(buf)
        if len(buf) != n:
            raise SinkError(f"local data ended at byte {offset + len(buf)}, expected {offset + n}", context=self._where)
        return buf


def read_exactly(data: BinaryIO, size: int, where: str) -> bytes:
    """The ``size`` bytes of a simple upload, read in one go (refused when the stream is shorter)."""
    payload = data.read(size)
    if len(payload) != size:
        raise SinkError(f"local data is {len(payload)} bytes, expected {size}", context=where)
    return payload


def send_parts(data: BinaryIO, size: int, part_size: int, concurrency: int, send: Callable[[int, bytes], T],
               where: str, seen: Callable[[bytes], None] | None = None) -> list[T]:
    """Read ``size`` bytes of ``data`` in ``part_size`` pieces and hand each to ``send(number,
    piece)`` (numbers from 1) on up to ``concurrency`` threads; their answers in order. At most
    ``concurrency`` pieces are held in memory. ``seen`` is given every piece, in order (to hash the
    whole while it goes)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    answers: list[T] = []
    pending: deque = deque()
    pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="upload-part")
    try:
        offset, number = 0, 1
        while offset < size:
            piece = read_exactly(data, min(part_size, size - offset), where)
            if seen is not None:
                seen(piece)
            pending.append(pool.submit(send, number, piece))
            offset, number = offset + len(piece), number + 1
            if len(pending) >= concurrency:
                answers.append(pending.popleft().result())
        while pending:
            answers.append(pending.popleft().result())
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)
    return answers


def upload_options(options: dict) -> dict[str, Any]:
    """The upload and retry options an SDK remote was given (typed, see ``catalog``), as keyword
    arguments; those not given keep the remote's own defaults."""
    keys = ("simple_upload_limit", "chunk_size", "attempts", "retry_max_delay", "timeout")
    return {k: options[k] for k in keys if options.get(k) is not None}


def object_store_settings(options: dict) -> dict[str, Any]:
    """The upload and retry settings of an object store (S3, Azure) from its typed options (they
    retry each request themselves, so the transfer options are theirs)."""
    return dict(simple_upload_limit=options["simple_upload_limit"] or 8 * MiB, chunk_size=options["chunk_size"] or 8 * MiB,
                upload_concurrency=options["upload_concurrency"], attempts=options["retries"] + 1,
                base_delay=options["retry_base_delay"],
                max_delay=30.0 if options["retry_max_delay"] is None else options["retry_max_delay"],
                timeout=options["timeout"])


def split_path(path: str, name: str) -> list[str]:
    """The components of a remote path, refusing ``.`` and ``..`` (``name``: the remote, for messages)."""
    parts = [p for p in path.split("/") if p != ""]
    for part in parts:
        if part in (".", ".."):
            raise SinkError(f"path {path!r} may not contain '.' or '..'", context=name)
    return parts


def check_name_part(part: str, max_name: int, forbidden: str, service: str, full: str) -> None:
    """Refuse a path component that is too long or holds a forbidden or control character."""
    if len(part) > max_name:
        raise SinkError(f"name {part[:40]!r}... is longer than {max_name} characters", context=full)
    bad = sorted({c for c in part if c in forbidden or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise SinkError(f"name {part!r} contains characters {service} does not allow: "
                        f"{''.join(map(repr, bad))}", context=full)


def translate_transport_error(exc: BaseException, service: str, what: str, where: str) -> BaseException | None:
    """A ``requests`` TLS or connection failure -> our error tree; None for any other exception."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return SinkError(f"TLS verification of the {service} server failed: {exc}", context=where)
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError)):
        return TransientSinkError(f"connection to {service} lost while trying to {what} ({type(exc).__name__})",
                                  context=where)
    return None


# ---- server remotes (FTP/FTPS, SFTP) --------------------------------------------------------
class ConnectedRemote:
    """One connection opened on demand (``connect``) and dropped after a transient failure, so
    the next call opens a new one. Subclasses set ``root`` and provide ``connect``,
    ``_session()`` (the open connection), ``_drop()`` and ``_translate(exc, what)``."""

    root: str

    # what a subclass provides (abstract for the type checker; no ABC at run time)
    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def _session(self) -> Any: ...

    @abc.abstractmethod
    def _drop(self) -> None: ...

    @abc.abstractmethod
    def _translate(self, e: BaseException, what: str) -> BaseException: ...

    def _abs(self, path: str) -> str:
        path = path.strip("/")
        return posixpath.join(self.root, path) if path else self.root

    def _call(self, what: str, fn: Callable[..., T]) -> T:
        self.connect()
        try:
            return fn(self._session())
        except Exception as e:  # noqa: BLE001 - translated into our error tree just below
            err = self._translate(e, what)
            if isinstance(err, TransientSinkError):
                self._drop()
            raise err from None


def host_and_port(parts: SplitResult, url: str, scheme: str, default_port: int) -> tuple[str, int]:
    """The host (required) and port (``default_port`` when absent) of a server URL."""
    if not parts.hostname:
        raise ConfigError(f"{scheme}:// URL without a host: {url!r}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigError(f"bad port in {url!r}") from None
    return parts.hostname, port


def server_capabilities(options: dict, tested: str) -> Capabilities:
    """A file server's capabilities: POSIX-like defaults, which the options may override (a
    server on Windows: ``case_insensitive``, ``forbidden_chars``, shorter ``max_path_length``)."""
    return Capabilities(
        max_path_length=options["max_path_length"],
        max_name_length=options["max_name_length"],
        forbidden_chars=options["forbidden_chars"] or "",
        case_insensitive=options["case_insensitive"],
        rename=True, checksum=None, streaming=True, tested=tested,
    )


def call_translated(fn: Callable[[], T], translate: Callable[[BaseException], BaseException], *, attempts: int,
                    base_delay: float, max_delay: float, describe: str) -> T:
    """``fn()`` under the one retry helper, an SDK's error translated into our tree first
    (``translate`` returns the error itself when it has nothing better), so that only what the
    translation marks transient is retried."""
    def attempt() -> T:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - translated into our error tree just below
            err = translate(e)
            if err is e:
                raise
            raise err from None

    return retry_call(attempt, attempts=attempts, base_delay=base_delay, max_delay=max_delay, describe=describe)
