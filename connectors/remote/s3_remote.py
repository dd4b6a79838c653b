"""S3 remote: Amazon S3 and S3-compatible stores (MinIO, Ceph, Wasabi...), on boto3.

URL: ``s3://bucket/prefix`` (the prefix is optional; objects are ``prefix/<path>``). Options:

* ``endpoint_url``: another S3-compatible service (``https://minio.example.com:9000``); an
  ``http://`` endpoint is plain HTTP (a local test server), ``https`` is always verified, against
  the system store or ``ca_bundle`` (a CA file); verification cannot be turned off;
  ``region``, ``path_style=true`` (path-style addressing, which most compatible stores need);
* credentials by reference only: ``access_key_id_env``/``access_key_id_file`` with
  ``secret_access_key_env``/``secret_access_key_file`` (and ``session_token_env``/``_file``), or
  ``profile`` (a profile of ``~/.aws/credentials``), or else boto3's own chain (``AWS_*``
  variables, shared files, instance roles). A key given as a value is refused;
* ``simple_upload_limit`` (default 8 MiB): larger files use a multipart upload in ``chunk_size``
  parts (default 8 MiB, at least 5 MiB, raised so a file needs at most 10,000 parts), up to
  ``upload_concurrency`` (default 4) parts in flight, so memory stays below parts x concurrency;
* ``retries``, ``retry_base_delay``, ``retry_max_delay``, ``timeout``.

An upload appears whole or not at all: a single PUT, or a multipart upload that only becomes an
object when completed (and is aborted when it fails). Every PUT and part carries its Content-MD5,
which S3 checks; the object's sha256 is stored in its metadata (``x-amz-meta-sha256``), read back
by ``stat`` (the remote sink skips identical files with it) and checked by ``get``. Every call goes
through ``exporter.retry.retry_call`` (botocore's own retries are off: one pacer); a dropped
connection retries the one request (a part) it cut.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret
from exporter.retry import parse_retry_after

from .base import RemoteStat
from .catalog import S3
from .common import call_translated, object_store_settings, read_exactly, send_parts, split_path

if TYPE_CHECKING:  # the client's types come with the stubs (dev extra: boto3-stubs[s3])
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, HeadObjectOutputTypeDef, ListObjectsV2OutputTypeDef

log = logging.getLogger("exporter.remote.s3")
T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART = 5 * MiB
MAX_PARTS = 10_000
MAX_COPY = 5 * 1024 * MiB  # largest object CopyObject copies in one call
_TESTED = "moto's S3 server on loopback, behind TLS and a proxy that drops connections mid-upload"
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed", "BadDigest", "OperationAborted"}
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
               "AllAccessDisabled", "AccountProblem", "InvalidSecurity"}


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Remote:
    """A prefix in an S3 bucket. See the module docstring."""

    #: each call is retried here (a multipart upload retries its parts), not again by the sink
    retries_itself = True

    def __init__(self, bucket: str, prefix: str = "", *, session_kwargs: dict | None = None,
                 endpoint_url: str | None = None, region: str | None = None, path_style: bool = False,
                 ca_bundle: str | None = None, simple_upload_limit: int = 8 * MiB, chunk_size: int = 8 * MiB,
                 upload_concurrency: int = 4, attempts: int = 6, base_delay: float = 0.5,
                 max_delay: float = 30.0, timeout: float = 60.0):
        self.bucket = bucket
        self.root = prefix.strip("/")
        self.name = f"s3://{bucket}/{self.root}" + (f" at {endpoint_url}" if endpoint_url else "")
        self.capabilities = Capabilities(
            max_path_length=1024, max_name_length=1024, rename=False, checksum="sha256", streaming=True,
            tested=_TESTED)
        self._session_kwargs = dict(session_kwargs or {})
        self.endpoint_url = endpoint_url
        self.region = region
        self.path_style = path_style
        self.ca_bundle = ca_bundle
        self.simple_upload_limit = simple_upload_limit
        self.part_size = max(MIN_PART, chunk_size)
        self.concurrency = max(1, upload_concurrency)
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.timeout = timeout
        self._client: S3Client | None = None

    def __repr__(self) -> str:
        return f"S3Remote({self.name})"

    # ---- connection --------------------------------------------------------------------------
    def connect(self) -> None:
        if self._client is not None:
            return
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # exporter.retry is the one pacer
            connect_timeout=self.timeout, read_timeout=self.timeout,
            max_pool_connections=max(10, self.concurrency + 2),
            s3={"addressing_style": "path" if self.path_style else "auto"},
            signature_version="s3v4",
            # we send Content-MD5 ourselves and check sha256: no second checksum per request
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(**self._session_kwargs)
            client = session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                                    verify=self.ca_bundle or True, config=config)
        except Exception as e:  # noqa: BLE001 - translated into our error tree just below
            raise self._translate(e, "connect", "") from None
        self._client = client
        self._call(lambda: client.head_bucket(Bucket=self.bucket), "open the bucket", "")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _c(self) -> S3Client:
        if self._client is None:
            self.connect()
        assert self._client is not None  # connect() sets it or raises
        return self._client

    def _key(self, path: str) -> str:
        parts = split_path(path, self.name)
        return "/".join(([self.root] if self.root else []) + parts)

    # ---- errors and retries ------------------------------------------------------------------
    def _translate(self, e: BaseException, what: str, key: str) -> BaseException:
        from botocore import exceptions as bx

        if isinstance(e, (SinkError, ConfigError)) or not isinstance(e, Exception):
            return e
        where = f"{self.name}: {what} {key}".rstrip()
        if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return ConfigError("no S3 credentials: give access_key_id_env + secret_access_key_env (or _file), "
                               "a profile, or the AWS_* variables", context=where)
        if isinstance(e, bx.ProfileNotFound):
            return ConfigError(f"S3 profile not found ({e})", context=where)
        if isinstance(e, bx.SSLError) and _verification_failed(e):
            return SinkError(f"TLS verification of the S3 server failed: {e}", context=where)
        if isinstance(e, (bx.HTTPClientError, bx.ConnectionError, bx.IncompleteReadError)):
            return TransientSinkError(f"connection to S3 lost ({type(e).__name__})", context=where)
        if isinstance(e, bx.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code") or "")
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            message = err.get("Message") or code or f"HTTP {status}"
            if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
                headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                return TransientSinkError(f"S3 answered {code or status} ({message})", context=where,
                                          retry_after=parse_retry_after(headers.get("retry-after")))
            if code in _AUTH_CODES or status == 403:
                return SinkError(f"S3 refused the credentials or the access ({code or status}: {message})",
                                 context=where)
            if code == "NoSuchBucket" or (what == "open the bucket" and status == 404):
                return SinkError(f"bucket {self.bucket!r} does not exist", context=where)
            if code in ("QuotaExceeded", "EntityTooLarge", "InsufficientStorage"):
                return SinkError(f"disk full or quota exceeded ({code}: {message})", context=where)
            return SinkError(f"S3 refused to {what} ({code or status}: {message})", context=where)
        if isinstance(e, bx.BotoCoreError):
            return SinkError(f"S3 client error: {e}", context=where)
        return e

    def _call(self, fn: Callable[[], T], what: str, key: str) -> T:
        return call_translated(fn, lambda e: self._translate(e, what, key), attempts=self.attempts,
                               base_delay=self.base_delay, max_delay=self.max_delay, describe=f"s3 {what} {key}")

    @staticmethod
    def _missing(e: BaseException) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(e, ClientError):
            return False
        code = str(e.response.get("Error", {}).get("Code") or "")
        return code in ("404", "NoSuchKey", "NotFound") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404

    def _head(self, key: str) -> HeadObjectOutputTypeDef | None:
        client = self._c()

        def head() -> HeadObjectOutputTypeDef | None:
            try:
                return client.head_object(Bucket=self.bucket, Key=key)
            except Exception as e:
                if self._missing(e):
                    return None
                raise

        return self._call(head, "stat", key)

    # ---- Remote ------------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        head = self._head(self._key(path))
        if head is None:
            return None
        return RemoteStat(int(head["ContentLength"]), (head.get("Metadata") or {}).get("sha256"))

    def mkdir(self, path: str) -> None:
        """S3 has no folders: a key's prefix exists as soon as an object has it."""

    def delete(self, path: str) -> None:
        key = self._key(path)
        client = self._c()
        self._call(lambda: client.delete_object(Bucket=self.bucket, Key=key), "delete", key)

    def rename(self, src: str, dst: str) -> None:
        """A server-side copy then a delete (S3 has no rename; objects up to 5 GiB)."""
        a, b = self._key(src), self._key(dst)
        head = self._head(a)
        if head is None:
            raise SinkError(f"cannot rename {a}: it does not exist", context=self.name)
        if int(head["ContentLength"]) > MAX_COPY:
            raise SinkError(f"cannot rename {a}: S3 copies at most 5 GiB in one call", context=self.name)
        client = self._c()
        self._call(lambda: client.copy_object(Bucket=self.bucket, Key=b, CopySource={"Bucket": self.bucket, "Key": a},
                                              MetadataDirective="COPY"), f"copy {a} to", b)
        self.delete(src)

    def listdir(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        folder = self._key(path)
        prefix = f"{folder}/" if folder else ""
        client = self._c()

        def page(token: str | None) -> ListObjectsV2OutputTypeDef:
            if token:
                return client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/", ContinuationToken=token)
            return client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/")

        token = None
        while True:
            answer = self._call(functools.partial(page, token), "list", prefix)
            for obj in answer.get("Contents", ()):
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:
                    yield name, RemoteStat(int(obj["Size"]))
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        """Every object under the folder, through the client's own paginator (no delimiter)."""
        folder = self._key(path)
        prefix = f"{folder}/" if folder else ""
        pages = self._c().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for answer in self._call(lambda: list(pages), "list", prefix):
            for obj in answer.get("Contents", ()):
                if not obj["Key"].endswith("/"):
                    yield obj["Key"][len(prefix):], RemoteStat(int(obj["Size"]))

    def get(self, path: str, dest: BinaryIO) -> bool:
        key = self._key(path)
        client = self._c()
        start = dest.tell()
        missing = object()

        def fetch() -> Any:
            dest.seek(start)
            dest.truncate()
            try:
                answer = client.get_object(Bucket=self.bucket, Key=key)
            except Exception as e:
                if self._missing(e):
                    return missing
                raise
            want = (answer.get("Metadata") or {}).get("sha256")
            h, n = hashlib.sha256(), 0
            with contextlib.closing(answer["Body"]) as body:
                for chunk in body.iter_chunks(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    dest.write(chunk)
            if n != int(answer["ContentLength"]) or (want and h.hexdigest() != want):
                raise TransientSinkError(f"download of {key} is {n} bytes with sha256 {h.hexdigest()}, the object "
                                         f"has {answer['ContentLength']} bytes, sha256 {want}", context=self.name)
            return True

        return self._call(fetch, "download", key) is not missing

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        key = self._key(path)
        where = f"{self.name} {key}"
        client = self._c()
        if size <= self.simple_upload_limit:
            payload = read_exactly(data, size, where)
            sha = hashlib.sha256(payload).hexdigest()
            self._call(lambda: client.put_object(Bucket=self.bucket, Key=key, Body=payload, ContentLength=size,
                                                 ContentMD5=_md5_b64(payload), Metadata={"sha256": sha}),
                       "upload", key)
            return
        digest = _digest_and_rewind(data)
        meta = {"sha256": digest} if digest else {}
        upload_id = self._call(lambda: client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta),
                               "start multipart upload", key)["UploadId"]
        try:
            parts = self._upload_parts(client, key, upload_id, data, size, where)
            self._call(lambda: client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}),
                "complete multipart upload", key)
        except BaseException:
            with contextlib.suppress(Exception):  # nothing half-visible: its parts are dropped
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        head = self._head(key)
        if head is None or int(head["ContentLength"]) != size:
            raise TransientSinkError(f"{key} is {head and head['ContentLength']} bytes after upload, expected {size}",
                                     context=self.name)

    def _upload_parts(self, client: S3Client, key: str, upload_id: str, data: BinaryIO, size: int, where: str
                      ) -> list[CompletedPartTypeDef]:
        part_size = max(self.part_size, -(-size // MAX_PARTS))

        def send(number: int, buf: bytes) -> CompletedPartTypeDef:
            answer = self._call(lambda: client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=buf,
                ContentLength=len(buf), ContentMD5=_md5_b64(buf)), f"upload part {number} of", key)
            return {"PartNumber": number, "ETag": answer["ETag"]}

        return send_parts(data, size, part_size, self.concurrency, send, where)


def _verification_failed(e: BaseException) -> bool:
    """A TLS error that is about the server's certificate (terminal), not a broken connection."""
    text = str(e).lower()
    return "certificate" in text or "hostname" in text or "wrong version number" in text


def _digest_and_rewind(data: BinaryIO) -> str | None:
    """The sha256 of what is left in ``data``, which is then rewound; None when it cannot seek
    (the object then carries no sha256)."""
    try:
        if not data.seekable():
            return None
        start = data.tell()
    except (AttributeError, OSError):
        return None
    h = hashlib.sha256()
    while chunk := data.read(1 << 20):
        h.update(chunk)
    data.seek(start)
    return h.hexdigest()


def create_remote(url: str, options: dict | None = None) -> S3Remote:
    """``s3://bucket/prefix`` -> an S3Remote (credentials from env variables, files or boto3's chain)."""
    options = S3.parse_options(options or {})
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise ConfigError("s3:// needs boto3 (pip install 'exporter[s3]')") from None
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ConfigError(f"not an S3 URL: {url!r}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ConfigError("an S3 URL carries no credentials: use access_key_id_env / secret_access_key_env "
                          "(or _file), a profile, or the AWS_* variables")
    bucket = parts.netloc
    if not bucket:
        raise ConfigError(f"s3:// URL without a bucket: {url!r} (s3://bucket/prefix)")
    endpoint = options["endpoint_url"] or None
    if endpoint and urlsplit(str(endpoint)).scheme not in ("http", "https"):
        raise ConfigError(f"S3 option endpoint_url must be an http(s):// URL, got {endpoint!r}")
    session: dict[str, Any] = {}
    key_id = read_secret(options, "access_key_id", f"access key id for {url}")
    secret = read_secret(options, "secret_access_key", f"secret access key for {url}")
    token = read_secret(options, "session_token", f"session token for {url}")
    if bool(key_id) != bool(secret):
        raise ConfigError("S3: give both the access key id and the secret access key (access_key_id_env and "
                          "secret_access_key_env, or their _file options), or neither")
    if key_id:
        session.update(aws_access_key_id=key_id, aws_secret_access_key=secret)
        if token:
            session["aws_session_token"] = token
    if options["profile"]:
        session["profile_name"] = options["profile"]
    return S3Remote(
        bucket, unquote(parts.path or ""), session_kwargs=session, endpoint_url=endpoint,
        region=options["region"] or None, path_style=options["path_style"], ca_bundle=options["ca_bundle"] or None,
        **object_store_settings(options),
    )

