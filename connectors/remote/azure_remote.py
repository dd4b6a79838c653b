"""Azure Blob Storage remote, on azure-storage-blob.

URL: ``azure://account/container/prefix`` (the prefix is optional; blobs are ``prefix/<path>``).
The service is ``https://<account>.blob.core.windows.net`` unless the option ``endpoint`` gives
another account URL (Azurite: ``http://127.0.0.1:10000/devstoreaccount1``; a sovereign cloud).
``https`` is always verified, against the system store or ``ca_bundle``; an ``http://`` endpoint is
plain HTTP (a local emulator).

Credentials by reference only, one of: ``account_key_env``/``account_key_file`` (the shared key),
``sas_token_env``/``sas_token_file`` (a SAS token), ``connection_string_env``/
``connection_string_file`` (a whole connection string, endpoint included). A secret given as a
value, or in the URL, is refused.

Uploads: up to ``simple_upload_limit`` (default 8 MiB) one Put Blob; larger files are staged as
blocks of ``chunk_size`` (default 8 MiB, up to ``upload_concurrency`` in flight, so memory stays
below blocks x concurrency) and committed with one Put Block List: staged blocks are invisible, so
a blob appears whole or not at all (blocks never committed are dropped by the service). Every
request carries its Content-MD5, which the service checks; the blob's sha256 is stored in its
metadata, read back by ``stat`` and checked by ``get``. The SDK's own retries are off: every call
goes through ``exporter.retry.retry_call``.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import secrets as pysecrets
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret
from exporter.retry import parse_retry_after

from .base import RemoteStat
from .catalog import AZURE
from .common import call_translated, object_store_settings, read_exactly, send_parts, split_path

if TYPE_CHECKING:
    from azure.storage.blob import BlobProperties, ContainerClient

log = logging.getLogger("exporter.remote.azure")
T = TypeVar("T")

MiB = 1024 * 1024
MAX_BLOCKS = 50_000
MAX_BLOCK = 4000 * MiB
_TESTED = "Azurite (npm) on loopback, behind TLS and a proxy that drops connections mid-upload"
_AUTH_CODES = {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
               "InsufficientAccountPermissions", "AccountIsDisabled", "InvalidAuthenticationInfo"}
_TRANSIENT_CODES = {"ServerBusy", "OperationTimedOut", "InternalError", "Md5Mismatch", "InvalidMd5"}


class AzureRemote:
    """A prefix in an Azure Blob Storage container. See the module docstring."""

    #: each call is retried here (a block upload retries its blocks), not again by the sink
    retries_itself = True

    def __init__(self, account: str, container: str, prefix: str = "", *, endpoint: str | None = None,
                 credential: Any = None, connection_string: str | None = None, ca_bundle: str | None = None,
                 simple_upload_limit: int = 8 * MiB, chunk_size: int = 8 * MiB, upload_concurrency: int = 4,
                 attempts: int = 6, base_delay: float = 0.5, max_delay: float = 30.0, timeout: float = 60.0):
        self.account = account
        self.container = container
        self.root = prefix.strip("/")
        self.endpoint = endpoint or f"https://{account}.blob.core.windows.net"
        self.name = f"azure://{account}/{container}/{self.root}" + (f" at {endpoint}" if endpoint else "")
        self.capabilities = Capabilities(
            max_path_length=1024, max_name_length=1024, rename=False, checksum="sha256", streaming=True,
            tested=_TESTED)
        self._credential = credential
        self._connection_string = connection_string
        self.ca_bundle = ca_bundle
        self.simple_upload_limit = simple_upload_limit
        self.block_size = max(1, min(chunk_size, MAX_BLOCK))
        self.concurrency = max(1, upload_concurrency)
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.timeout = timeout
        self._container: ContainerClient | None = None

    def __repr__(self) -> str:
        return f"AzureRemote({self.name})"

    # ---- connection --------------------------------------------------------------------------
    def connect(self) -> None:
        if self._container is not None:
            return
        from azure.storage.blob import BlobServiceClient

        kwargs: dict[str, Any] = dict(retry_total=0, connection_timeout=self.timeout, read_timeout=self.timeout,
                      connection_verify=self.ca_bundle or True)
        try:
            if self._connection_string:
                service = BlobServiceClient.from_connection_string(self._connection_string, **kwargs)
            else:
                service = BlobServiceClient(account_url=self.endpoint, credential=self._credential, **kwargs)
            container = service.get_container_client(self.container)
        except ValueError as e:
            raise ConfigError(f"Azure settings refused: {e}", context=self.name) from None
        self._call(container.get_container_properties, "open the container", "")
        self._container = container

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()

    def _c(self) -> ContainerClient:
        if self._container is None:
            self.connect()
        assert self._container is not None  # connect() sets it or raises
        return self._container

    def _key(self, path: str) -> str:
        return "/".join(([self.root] if self.root else []) + split_path(path, self.name))

    # ---- errors and retries ------------------------------------------------------------------
    def _translate(self, e: BaseException, what: str, key: str) -> BaseException:
        from azure.core import exceptions as ax

        if isinstance(e, (SinkError, ConfigError)) or not isinstance(e, Exception):
            return e
        where = f"{self.name}: {what} {key}".rstrip()
        if isinstance(e, (ax.ServiceRequestError, ax.ServiceResponseError, ax.IncompleteReadError)):
            text = str(e).lower()
            if "certificate" in text or "hostname" in text or "wrong version number" in text:
                return SinkError(f"TLS verification of the Azure server failed: {e}", context=where)
            return TransientSinkError(f"connection to Azure lost ({type(e).__name__})", context=where)
        if isinstance(e, ax.HttpResponseError):
            status = int(getattr(e, "status_code", 0) or 0)
            code = str(getattr(e, "error_code", "") or "")
            message = (getattr(e, "reason", None) or code or f"HTTP {status}")
            if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
                headers = getattr(e.response, "headers", {}) or {}
                return TransientSinkError(f"Azure answered {code or status} ({message})", context=where,
                                          retry_after=parse_retry_after(headers.get("Retry-After")))
            if isinstance(e, ax.ClientAuthenticationError) or code in _AUTH_CODES or status == 403:
                return SinkError(f"Azure refused the credentials or the access ({code or status})", context=where)
            if code == "ContainerNotFound" or (what == "open the container" and status == 404):
                return SinkError(f"container {self.container!r} does not exist", context=where)
            if code in ("AccountStorageQuotaExceeded", "RequestBodyTooLarge", "BlockCountExceedsLimit"):
                return SinkError(f"disk full or quota exceeded ({code})", context=where)
            return SinkError(f"Azure refused to {what} ({code or status}: {message})", context=where)
        if isinstance(e, ax.AzureError):
            return SinkError(f"Azure client error: {e}", context=where)
        return e

    def _call(self, fn: Callable[[], T], what: str, key: str) -> T:
        return call_translated(fn, lambda e: self._translate(e, what, key), attempts=self.attempts,
                               base_delay=self.base_delay, max_delay=self.max_delay, describe=f"azure {what} {key}")

    def _props(self, key: str) -> BlobProperties | None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._c().get_blob_client(key)

        def props() -> BlobProperties | None:
            try:
                return blob.get_blob_properties()
            except ResourceNotFoundError:
                return None

        return self._call(props, "stat", key)

    # ---- Remote ------------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        p = self._props(self._key(path))
        if p is None:
            return None
        return RemoteStat(int(p.size), (p.metadata or {}).get("sha256"))

    def mkdir(self, path: str) -> None:
        """Blob storage has no folders: a name's prefix exists as soon as a blob has it."""

    def delete(self, path: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        key = self._key(path)
        blob = self._c().get_blob_client(key)

        def remove() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                blob.delete_blob()

        self._call(remove, "delete", key)

    def rename(self, src: str, dst: str) -> None:
        """A server-side copy (waited for) then a delete: Blob Storage has no rename."""
        a, b = self._key(src), self._key(dst)
        if self._props(a) is None:
            raise SinkError(f"cannot rename {a}: it does not exist", context=self.name)
        source = self._c().get_blob_client(a)
        target = self._c().get_blob_client(b)
        copy = self._call(lambda: target.start_copy_from_url(source.url), f"copy {a} to", b)
        status = copy.get("copy_status")
        deadline = time.monotonic() + max(self.timeout, 60)
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            props = self._props(b)
            status = props.copy.status if props is not None else "not found"  # the copy was deleted meanwhile
        if status != "success":
            raise SinkError(f"server-side copy of {a} to {b} ended {status!r}", context=self.name)
        self.delete(src)

    def listdir(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        folder = self._key(path)
        prefix = f"{folder}/" if folder else ""
        container = self._c()
        items = self._call(lambda: list(container.walk_blobs(name_starts_with=prefix or None, delimiter="/")),
                           "list", prefix)
        for item in items:
            name = item.name[len(prefix):]
            if name and not name.endswith("/") and hasattr(item, "size"):
                yield name, RemoteStat(int(item.size))

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        folder = self._key(path)
        prefix = f"{folder}/" if folder else ""
        container = self._c()
        items = self._call(lambda: list(container.list_blobs(name_starts_with=prefix or None)), "list", prefix)
        for item in items:
            name = item.name[len(prefix):]
            if name and not name.endswith("/"):
                yield name, RemoteStat(int(item.size))

    def get(self, path: str, dest: BinaryIO) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        key = self._key(path)
        blob = self._c().get_blob_client(key)
        start = dest.tell()
        missing = object()

        def fetch() -> Any:
            dest.seek(start)
            dest.truncate()
            try:
                stream = blob.download_blob(max_concurrency=1)
            except ResourceNotFoundError:
                return missing
            want = (stream.properties.metadata or {}).get("sha256")
            h, n = hashlib.sha256(), 0
            for chunk in stream.chunks():
                h.update(chunk)
                n += len(chunk)
                dest.write(chunk)
            if n != int(stream.properties.size) or (want and h.hexdigest() != want):
                raise TransientSinkError(f"download of {key} is {n} bytes with sha256 {h.hexdigest()}, the blob "
                                         f"has {stream.properties.size} bytes, sha256 {want}", context=self.name)
            return True

        return self._call(fetch, "download", key) is not missing

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        from azure.storage.blob import BlobBlock

        key = self._key(path)
        where = f"{self.name} {key}"
        blob = self._c().get_blob_client(key)
        if size <= self.simple_upload_limit:
            payload = read_exactly(data, size, where)
            meta = {"sha256": hashlib.sha256(payload).hexdigest()}
            self._call(lambda: blob.upload_blob(payload, length=size, overwrite=True, metadata=meta,
                                                validate_content=True, max_concurrency=1), "upload", key)
            return
        block_size = max(self.block_size, -(-size // MAX_BLOCKS))
        token = pysecrets.token_hex(6)  # block ids of this upload (all of one length, as the service wants)
        h = hashlib.sha256()

        def send(number: int, piece: bytes) -> str:
            block_id = base64.b64encode(f"{token}-{number:06d}".encode()).decode()
            self._call(lambda: blob.stage_block(block_id, piece, length=len(piece), validate_content=True),
                       f"upload block {number} of", key)
            return block_id

        ids = send_parts(data, size, block_size, self.concurrency, send, where, seen=h.update)
        meta = {"sha256": h.hexdigest()}
        self._call(lambda: blob.commit_block_list([BlobBlock(block_id=i) for i in ids], metadata=meta),
                   "commit the blocks of", key)
        props = self._props(key)
        if props is None or int(props.size) != size:
            raise TransientSinkError(f"{key} is {props and props.size} bytes after upload, expected {size}",
                                     context=self.name)


def create_remote(url: str, options: dict | None = None) -> AzureRemote:
    """``azure://account/container/prefix`` -> an AzureRemote (credentials from env variables or files)."""
    options = AZURE.parse_options(options or {})
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        raise ConfigError("azure:// needs azure-storage-blob (pip install 'exporter[azure]')") from None
    parts = urlsplit(url)
    if parts.scheme.lower() != "azure":
        raise ConfigError(f"not an Azure URL: {url!r}")
    if parts.username or parts.password or "@" in parts.netloc or parts.query:
        raise ConfigError("an Azure URL carries no credentials: use account_key_env, sas_token_env or "
                          "connection_string_env (or their _file options)")
    account = parts.netloc
    container, _, prefix = unquote(parts.path or "").strip("/").partition("/")
    if not account or not container:
        raise ConfigError(f"Azure URL needs an account and a container: {url!r} (azure://account/container/prefix)")
    endpoint = options["endpoint"] or None
    if endpoint and urlsplit(str(endpoint)).scheme not in ("http", "https"):
        raise ConfigError(f"Azure option endpoint must be an http(s):// URL, got {endpoint!r}")
    key = read_secret(options, "account_key", f"account key for {url}")
    sas = read_secret(options, "sas_token", f"SAS token for {url}")
    conn = read_secret(options, "connection_string", f"connection string for {url}")
    given = [n for n, v in (("account_key", key), ("sas_token", sas), ("connection_string", conn)) if v]
    if len(given) != 1:
        raise ConfigError("Azure needs exactly one of account_key_env, sas_token_env, connection_string_env (or "
                          f"their _file options); {'got ' + ', '.join(given) if given else 'none was given'}")
    if conn and endpoint:
        raise ConfigError("Azure: a connection string names its endpoint; do not give the endpoint option too")
    credential: Any = None
    if key:
        from azure.core.credentials import AzureNamedKeyCredential

        credential = AzureNamedKeyCredential(account, key)
    elif sas:
        from azure.core.credentials import AzureSasCredential

        credential = AzureSasCredential(sas.lstrip("?"))
    return AzureRemote(
        account, container, prefix, endpoint=endpoint, credential=credential, connection_string=conn,
        ca_bundle=options["ca_bundle"] or None, **object_store_settings(options),
    )
