"""Dropbox remote: the official ``dropbox`` SDK behind the small ``Remote`` interface.

URL: ``dropbox:///path/inside/dropbox`` (``dropbox:///`` is the account root; for an app-folder
app the root is the app folder). Secrets never come from the URL or the options:

* ``token_file`` (option, a path) or the env variable named by ``token_env`` (default
  ``DROPBOX_TOKEN``): a long- or short-lived access token;
* or a refresh token (env ``DROPBOX_REFRESH_TOKEN``, or ``refresh_token_file``) with the app key
  (env ``DROPBOX_APP_KEY``, not secret) and, for non-PKCE apps, the app secret (env
  ``DROPBOX_APP_SECRET``); the SDK refreshes the access token when it expires.

Uploads up to ``simple_upload_limit`` (default 8 MiB, never above Dropbox's 150 MB) go in one
``files/upload`` call; larger ones use an upload session (``upload_session/start``,
``append_v2``, ``finish``) in ``chunk_size`` pieces (default 8 MiB, a multiple of 4 MiB as Dropbox
recommends), so memory stays bounded by one chunk. Every call is retried through
``exporter.retry.retry_call``; a session survives a dropped connection: the same chunk is sent
again at the same offset and, if Dropbox had already stored it, its ``incorrect_offset`` answer
gives the offset to continue from. The content hash Dropbox reports for the committed file is
compared with the hash computed locally while uploading.
``walk`` (``exporter forget``): a recursive ``files/list_folder``, then ``/continue`` while ``has_more``.

Testing hook: ``api_host`` / ``content_host`` (``host:port``) replace ``api.dropboxapi.com`` /
``content.dropboxapi.com`` in the URLs the SDK's requests session sends (a transport adapter
mounted on it) and ``ca_certs`` names the CA bundle used to verify that host; the SDK always
speaks HTTPS with certificate verification.
"""
from __future__ import annotations

import functools
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret
from exporter.retry import retry_call

from .base import RemoteStat
from .catalog import DROPBOX
from .common import OffsetReader, check_name_part, read_exactly, split_path, upload_options
from .dropbox_errors import translate_error, union_tags

log = logging.getLogger("exporter.remote.dropbox")
T = TypeVar("T")

MiB = 1024 * 1024
#: Dropbox's limit for one ``files/upload`` call (and one session append)
DROPBOX_MAX_SIMPLE_UPLOAD = 150 * MiB
DROPBOX_BLOCK = 4 * MiB
#: help.dropbox.com/organize/file-names: paths must be fewer than 260 characters (UTF-16 units)
DROPBOX_MAX_PATH = 259
#: hard limit per path component (the API answers ``malformed_path`` beyond)
DROPBOX_MAX_NAME = 255
#: "/" and "\\" are always refused; the others break syncing to Windows, so we never create them
DROPBOX_FORBIDDEN = '/\\<>:"|?*'
#: names Dropbox's clients ignore (never synced) — we refuse to create them
DROPBOX_IGNORED_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store", "icon\r", ".dropbox", ".dropbox.attr"})


class _IncorrectOffset(Exception):
    """Dropbox holds a different number of bytes for this session than we assumed."""

    def __init__(self, correct_offset: int):
        super().__init__(correct_offset)
        self.correct_offset = correct_offset


class _SessionGone(Exception):
    """The upload session is unknown or closed (e.g. a finish whose answer was lost)."""


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class DropboxRemote:
    """A folder in a Dropbox account, reached through the official SDK."""

    #: every call already goes through retry_call here (needed to resume mid-session), so the
    #: remote sink does not wrap it in a second retry loop
    retries_itself = True

    def __init__(
        self,
        root: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        app_key: str | None = None,
        app_secret: str | None = None,
        api_host: str | None = None,
        content_host: str | None = None,
        ca_certs: str | None = None,
        simple_upload_limit: int = 8 * MiB,
        chunk_size: int = 8 * MiB,
        attempts: int = 6,
        retry_max_delay: float = 60.0,
        timeout: float = 100.0,
    ):
        if not (access_token or (refresh_token and app_key)):
            raise ConfigError("Dropbox needs an access token or a refresh token with the app key")
        self.root = "/" + root.strip("/") if root.strip("/") else ""
        self.name = f"dropbox://{self.root or '/'}"
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._app_key = app_key
        self._app_secret = app_secret
        self._api_host = api_host
        self._content_host = content_host or api_host
        self._ca_certs = ca_certs
        if simple_upload_limit <= 0 or chunk_size <= 0:
            raise ConfigError("Dropbox simple_upload_limit and chunk_size must be positive")
        self.simple_upload_limit = min(simple_upload_limit, DROPBOX_MAX_SIMPLE_UPLOAD)
        self.chunk_size = min(chunk_size, DROPBOX_MAX_SIMPLE_UPLOAD)
        self._attempts = max(1, attempts)
        self._retry_max_delay = retry_max_delay
        self._timeout = timeout
        self._dbx: Any = None
        self.capabilities = Capabilities(
            max_path_length=DROPBOX_MAX_PATH,  # of the whole path: the remote sink counts the root in
            max_name_length=DROPBOX_MAX_NAME,
            forbidden_chars=DROPBOX_FORBIDDEN,
            case_insensitive=True,
            rename=True,
            streaming=True,
            checksum="dropbox",
            max_simple_upload=DROPBOX_MAX_SIMPLE_UPLOAD,
            tested="real dropbox SDK against a local HTTPS fake of the v2 API (tests/connectors/remote)",
        )

    def __repr__(self) -> str:  # never shows a token
        return f"DropboxRemote({self.name!r})"

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        if self._dbx is not None:
            return
        try:
            import dropbox
            from dropbox.session import API_CONTENT_HOST, API_HOST
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError(f"the Dropbox remote needs the 'dropbox' package: {e.name} "
                              "(pip install 'exporter[dropbox]')") from None

        session = dropbox.create_session(ca_certs=self._ca_certs)
        if self._ca_certs or self._api_host:
            hosts: dict[str, str] = {}
            if self._api_host:
                hosts = {API_HOST: self._api_host, API_CONTENT_HOST: self._content_host or self._api_host}
            session.mount("https://", _adapter(hosts, self._ca_certs))
        dbx = dropbox.Dropbox(
            session=session,
            oauth2_access_token=self._access_token,
            oauth2_refresh_token=self._refresh_token,
            app_key=self._app_key,
            app_secret=self._app_secret,
            # retries are ours (exporter.retry), so the SDK must not sleep on its own
            max_retries_on_error=0,
            max_retries_on_rate_limit=0,
            timeout=self._timeout,
            user_agent="exporter",
        )
        self._dbx = dbx
        # validate the credentials now, with one clear error
        self._call(lambda: dbx.check_user("exporter"), self.root or "/", "check the token")

    def close(self) -> None:
        if self._dbx is not None:
            try:
                self._dbx.close()
            finally:
                self._dbx = None

    # -- paths ----------------------------------------------------------------------------------
    def _full(self, path: str) -> str:
        parts = split_path(path, self.name)  # backslashes are kept: the name rules refuse them
        if not parts and not self.root:
            raise SinkError("empty path", context=self.name)
        return posixpath.join(self.root or "/", *parts) if parts else self.root

    def _check_name_rules(self, full: str) -> None:
        """Refuse, before any upload, a path Dropbox would reject or mangle."""
        for part in full.strip("/").split("/"):
            check_name_part(part, DROPBOX_MAX_NAME, DROPBOX_FORBIDDEN, "Dropbox", full)
            if part != part.rstrip(" ."):
                raise SinkError(f"name {part!r} ends with a space or a period, which Dropbox does not allow", context=full)
            if part.lower() in DROPBOX_IGNORED_NAMES:
                raise SinkError(f"name {part!r} is ignored by Dropbox", context=full)
        if _utf16_len(full) > DROPBOX_MAX_PATH:
            raise SinkError(f"path is {_utf16_len(full)} characters long; Dropbox allows {DROPBOX_MAX_PATH}", context=full)

    # -- calls (errors translated by dropbox_errors) ----------------------------------------------
    def _call(self, fn: Callable[[], T], path: str, what: str,
              handle: Callable[[Any], T | None] | None = None) -> T:
        """Run one SDK call: ApiErrors first go through ``handle`` (which may return a value or
        raise an internal signal), then everything is translated; transient errors are retried."""
        from dropbox import exceptions as dx

        def attempt() -> T:
            try:
                return fn()
            except dx.ApiError as e:
                if handle is not None:
                    result = handle(e.error)
                    if result is not None:
                        return result
                raise translate_error(e, f"{self.name} {path}", what) from None
            except (_IncorrectOffset, _SessionGone):
                raise
            except Exception as e:
                translated = translate_error(e, f"{self.name} {path}", what)
                if translated is e:
                    raise
                raise translated from None

        return retry_call(attempt, attempts=self._attempts, max_delay=self._retry_max_delay,
                          describe=f"dropbox {what} {path}")

    def _client(self) -> Any:
        if self._dbx is None:
            self.connect()
        return self._dbx

    # -- Remote ---------------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        from dropbox import files

        full = self._full(path)
        dbx = self._client()
        missing = object()

        def handle(err: Any) -> Any:
            if "not_found" in union_tags(err):
                return missing
            return None

        md = self._call(lambda: dbx.files_get_metadata(full), full, "read metadata", handle)
        if md is missing or isinstance(md, files.DeletedMetadata):
            return None
        if isinstance(md, files.FolderMetadata):
            raise SinkError("is a folder, expected a file", context=f"{self.name} {full}")
        return RemoteStat(size=md.size, checksum=md.content_hash)

    def get(self, path: str, dest: BinaryIO) -> bool:
        """Download ``path`` into ``dest`` (streamed); False when it does not exist."""
        import contextlib

        full = self._full(path)
        dbx = self._client()
        missing = object()
        try:
            start = dest.tell() if dest.seekable() else None
        except (AttributeError, OSError):
            start = None

        def handle(err: Any) -> Any:
            return missing if "not_found" in union_tags(err) else None

        def fetch() -> bool:
            _md, resp = dbx.files_download(full)
            with contextlib.closing(resp):
                if start is not None:  # a retry starts the copy again
                    dest.seek(start)
                    dest.truncate()
                dest.writelines(resp.iter_content(1 << 16))
            return True

        return self._call(fetch, full, "download", handle) is not missing

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        """Every file under ``path`` (paths relative to it), from a recursive ``list_folder``."""
        from dropbox import files

        parts = split_path(path, self.name)
        top = posixpath.join(self.root or "/", *parts) if parts else self.root  # ("" is the root)
        dbx, gone = self._client(), object()

        def handle(err: Any) -> Any:
            return gone if {"not_found", "reset"} & set(union_tags(err)) else None

        def page(cursor: str | None) -> Any:
            if cursor is None:
                return self._call(lambda: dbx.files_list_folder(top, recursive=True), top or "/", "list", handle)
            return self._call(lambda: dbx.files_list_folder_continue(cursor), top or "/", "list", handle)

        for _attempt in range(3):  # (a cursor Dropbox resets: the listing starts again)
            found, got = [], page(None)
            if got is gone:
                return iter(())  # no such folder
            while got is not gone:
                found += [(md.path_display[len(top) + 1:], RemoteStat(md.size, md.content_hash)) for md in got.entries
                          if isinstance(md, files.FileMetadata) and md.path_lower.startswith(top.lower() + "/")]
                if not got.has_more:
                    return iter(found)
                got = page(got.cursor)
        raise TransientSinkError("the listing was reset three times", context=f"{self.name} {top or '/'}")

    def mkdir(self, path: str) -> None:
        full = self._full(path)
        if not full:
            return
        self._check_name_rules(full)
        dbx = self._client()

        def handle(err: Any) -> Any:
            tags = union_tags(err)
            if "conflict" in tags and "folder" in tags:
                return True  # already there
            return None

        self._call(lambda: dbx.files_create_folder_v2(full, autorename=False), full, "create folder", handle)

    def delete(self, path: str) -> None:
        full = self._full(path)
        dbx = self._client()

        def handle(err: Any) -> Any:
            tags = union_tags(err)
            return True if tags[:2] == ["path_lookup", "not_found"] else None

        self._call(lambda: dbx.files_delete_v2(full), full, "delete", handle)

    def rename(self, src: str, dst: str) -> None:
        full_src, full_dst = self._full(src), self._full(dst)
        self._check_name_rules(full_dst)
        dbx = self._client()
        conflict = object()

        def handle(err: Any) -> Any:
            tags = union_tags(err)
            if tags[:2] == ["to", "conflict"]:
                return conflict
            return None

        def move() -> Any:
            return self._call(lambda: dbx.files_move_v2(full_src, full_dst, autorename=False),
                              full_dst, f"move {full_src} to", handle)

        if move() is conflict:
            if full_src.lower() == full_dst.lower():  # case-only rename: the "conflict" is the source itself
                raise SinkError(f"cannot rename {full_src} onto itself", context=self.name)
            self.delete(dst)
            if move() is conflict:
                raise SinkError(f"{full_dst} was re-created while replacing it", context=self.name)

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        if size > self.simple_upload_limit:
            self.put_chunked(path, data, size, self.chunk_size)
            return
        from dropbox import files
        from dropbox.content_hash import DropboxContentHasher

        full = self._full(path)
        self._check_name_rules(full)
        payload = read_exactly(data, size, f"{self.name} {full}")
        hasher = DropboxContentHasher()
        hasher.update(payload)
        local_hash = hasher.hexdigest()
        dbx = self._client()
        md = self._call(
            lambda: dbx.files_upload(payload, full, mode=files.WriteMode.overwrite, mute=True,
                                     content_hash=local_hash),
            full, "upload",
        )
        self._verify(md, full, size, local_hash)

    def put_chunked(self, path: str, data: BinaryIO, size: int, chunk_size: int) -> None:
        from dropbox import files
        from dropbox.content_hash import DropboxContentHasher

        full = self._full(path)
        self._check_name_rules(full)
        chunk_size = max(1, min(chunk_size, DROPBOX_MAX_SIMPLE_UPLOAD))
        where = f"{self.name} {full}"
        dbx = self._client()
        reader = OffsetReader(data, where)
        hasher = DropboxContentHasher()
        hashed = 0  # bytes fed to the hasher, always a prefix of the file

        def feed(buf: bytes, at: int) -> None:
            nonlocal hashed
            if at <= hashed < at + len(buf):
                hasher.update(buf[hashed - at:])
                hashed = at + len(buf)

        first = reader.read_at(0, min(chunk_size, size))
        feed(first, 0)
        start = self._call(lambda: dbx.files_upload_session_start(first, close=False), full, "start upload session")
        session_id = start.session_id
        offset = len(first)

        def on_append_error(err: Any) -> Any:
            if err.is_incorrect_offset():
                raise _IncorrectOffset(err.get_incorrect_offset().correct_offset)
            if err.is_not_found() or err.is_closed():
                raise _SessionGone()
            return None

        while offset < size:
            buf = reader.read_at(offset, min(chunk_size, size - offset))
            feed(buf, offset)
            cursor = files.UploadSessionCursor(session_id=session_id, offset=offset)
            try:
                self._call(functools.partial(dbx.files_upload_session_append_v2, buf, cursor, close=False),
                           full, f"append at offset {offset}", on_append_error)
                offset += len(buf)
            except _IncorrectOffset as e:
                if not 0 <= e.correct_offset <= size:
                    raise SinkError(f"Dropbox reports offset {e.correct_offset} for a {size}-byte upload",
                                    context=where) from None
                log.info("dropbox %s: resuming upload session at offset %d (we were at %d)", full, e.correct_offset, offset)
                offset = e.correct_offset
            except _SessionGone:
                raise TransientSinkError("the Dropbox upload session expired or was closed", context=where) from None

        local_hash = hasher.hexdigest() if hashed == size else None
        commit = files.CommitInfo(path=full, mode=files.WriteMode.overwrite, mute=True)
        cursor = files.UploadSessionCursor(session_id=session_id, offset=size)
        finished_before = object()

        def on_finish_error(err: Any) -> Any:
            # a finish whose answer was lost: the session is gone, the file may already be there
            if err.is_lookup_failed():
                lookup = err.get_lookup_failed()
                if lookup.is_not_found() or lookup.is_closed():
                    return finished_before
                if lookup.is_incorrect_offset():
                    raise SinkError(f"Dropbox holds {lookup.get_incorrect_offset().correct_offset} bytes of this "
                                    f"upload, expected {size}", context=where)
            return None

        md = self._call(lambda: dbx.files_upload_session_finish(b"", cursor, commit), full, "finish upload session",
                        on_finish_error)
        if md is finished_before:
            st = self.stat(path)
            if st is None or st.size != size or (local_hash and st.checksum != local_hash):
                raise TransientSinkError("the upload session vanished before the file was committed", context=where)
            return
        self._verify(md, full, size, local_hash)

    def _verify(self, md: Any, full: str, size: int, local_hash: str | None) -> None:
        if md.size != size or (local_hash and md.content_hash and md.content_hash != local_hash):
            raise SinkError(f"Dropbox stored {md.size} bytes with hash {md.content_hash}, "
                            f"expected {size} bytes with hash {local_hash}", context=f"{self.name} {full}")


def _adapter(hosts: dict[str, str], ca_certs: str | None):
    """The session's HTTPS transport (requests' documented extension point, mounted on the session):
    an explicit CA bundle wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (requests lets those
    replace a session's ``verify`` on every request, which would silently ignore ``ca_certs``;
    verification itself always stays on), and the testing hook sends what the SDK addresses to
    Dropbox's hosts (``hosts``: theirs -> ``host:port``) elsewhere."""
    from requests.adapters import HTTPAdapter

    class Adapter(HTTPAdapter):
        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            parts = urlsplit(request.url)
            if parts.netloc in hosts:
                request.url = parts._replace(netloc=hosts[parts.netloc]).geturl()
            return super().send(request, stream=stream, timeout=timeout, verify=ca_certs or verify, cert=cert,
                                proxies=proxies)

    return Adapter()


def create_remote(url: str, options: dict | None = None) -> DropboxRemote:
    """``dropbox:///path`` -> a DropboxRemote (credentials from env variables or files only)."""
    options = DROPBOX.parse_options(options or {})
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] != "dropbox":
        raise ConfigError(f"not a Dropbox URL: {parts.scheme}://...")
    if parts.username or parts.password:
        raise ConfigError("a Dropbox URL carries no credentials: use DROPBOX_TOKEN or token_file")
    root = unquote((parts.netloc or "") + (parts.path or ""))

    access = read_secret(options, "token", "Dropbox access token", default_env="DROPBOX_TOKEN")
    refresh = read_secret(options, "refresh_token", "Dropbox refresh token", default_env="DROPBOX_REFRESH_TOKEN")
    app_key = options["app_key"] or os.environ.get(options["app_key_env"]) or None
    app_secret = read_secret(options, "app_secret", "Dropbox app secret", default_env="DROPBOX_APP_SECRET")
    if not access and not (refresh and app_key):
        raise ConfigError(
            f"no Dropbox credentials: set {options['token_env'] or 'DROPBOX_TOKEN'} (or the token_file option), "
            "or DROPBOX_REFRESH_TOKEN with DROPBOX_APP_KEY"
        )
    return DropboxRemote(
        root,
        access_token=access,
        refresh_token=refresh,
        app_key=app_key,
        app_secret=app_secret,
        api_host=options["api_host"] or None,
        content_host=options["content_host"] or None,
        ca_certs=options["ca_certs"] or None,
        **upload_options(options),
    )
