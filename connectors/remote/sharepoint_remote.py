"""SharePoint remote: a document library folder through ``office365-rest-python-client``.

URL: ``sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY/path`` (also ``/teams/SITE/...``;
a URL without ``/sites/`` or ``/teams/`` addresses the root site, its first segment being the
library). ``LIBRARY`` is the library's URL name (``Shared%20Documents``). The ``site_path``
option names a deeper site (``/sites/a/subsite``) when needed. ``sharepoint+http://host/...``
speaks plain HTTP (on-premises test servers, the loopback fake); ``sharepoint://`` is always HTTPS
with certificate verification (``ca_bundle`` option: a CA file that wins over
``REQUESTS_CA_BUNDLE``).

Secrets never come from the URL or options:

* an access token: file ``token_file`` or env variable ``token_env`` (default
  ``SHAREPOINT_TOKEN``), handed to the SDK through ``ClientContext.with_access_token``;
* or app-only credentials (MSAL): tenant and client id (options ``tenant``/``client_id`` or env
  ``SHAREPOINT_TENANT``/``SHAREPOINT_CLIENT_ID``, not secret) with the client secret from env
  ``SHAREPOINT_CLIENT_SECRET`` (or ``client_secret_file``), or with a certificate
  (``cert_path`` PEM private key + ``thumbprint``, passphrase from ``SHAREPOINT_CERT_PASSPHRASE``).

Files up to ``simple_upload_limit`` (default 4 MiB) go in one ``Files/add`` request; larger ones
use an upload session (placeholder ``Files/add``, ``StartUpload``, ``ContinueUpload``,
``FinishUpload``) in chunks that are multiples of 320 KiB (default 10 MiB). After a dropped
connection or a throttled chunk the remote asks the server where the session stands
(``GetUploadStatus``) and continues from that offset. Every request goes through
``exporter.retry.retry_call``; 429/503 honour ``Retry-After``. SharePoint's REST API exposes no
content hash, so ``stat`` reports the size only (``Capabilities.checksum`` is None).
``walk`` (``exporter forget``): each folder's ``Files`` and ``Folders`` collections, in one batch.
"""
from __future__ import annotations

import logging
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from exporter import secrets
from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret
from exporter.retry import retry_call

from .base import RemoteStat
from .catalog import SHAREPOINT
from .common import OffsetReader, check_name_part, read_exactly, split_path, upload_options
from .sharepoint_errors import NotFound, translate_error

log = logging.getLogger("exporter.remote.sharepoint")
T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
CHUNK_UNIT = 320 * KiB
#: learn.microsoft.com "Restrictions and limitations in OneDrive and SharePoint"
SHAREPOINT_MAX_PATH = 400
SHAREPOINT_MAX_NAME = 255
SHAREPOINT_FORBIDDEN = '"*:<>?/\\|'
#: Files/add accepts far more, but one request holds the whole body in memory
SHAREPOINT_MAX_SIMPLE_UPLOAD = 250 * MiB
_RESERVED_NAMES = frozenset(
    {".lock", "con", "prn", "aux", "nul", "desktop.ini"}
    | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


class SharePointRemote:
    """A folder of a SharePoint document library."""

    #: every call already goes through retry_call here (needed to resume mid-session), so the
    #: remote sink does not wrap it in a second retry loop
    retries_itself = True

    def __init__(
        self,
        site_url: str,
        root_path: str,
        *,
        configure_auth: Callable[[Any], None],
        ca_bundle: str | None = None,
        simple_upload_limit: int = 4 * MiB,
        chunk_size: int = 10 * MiB,
        attempts: int = 6,
        retry_max_delay: float = 60.0,
        timeout: float = 120.0,
    ):
        self.site_url = site_url.rstrip("/")
        self.root_path = "/" + root_path.strip("/")
        self.name = f"sharepoint:{self.site_url}{self.root_path[len(urlsplit(self.site_url).path):]}"
        self._configure_auth = configure_auth
        self._ca_bundle = ca_bundle
        if simple_upload_limit <= 0 or chunk_size <= 0:
            raise ConfigError("SharePoint simple_upload_limit and chunk_size must be positive")
        self.simple_upload_limit = min(simple_upload_limit, SHAREPOINT_MAX_SIMPLE_UPLOAD)
        self.chunk_size = self._round_chunk(chunk_size)
        self._attempts = max(1, attempts)
        self._retry_max_delay = retry_max_delay
        self._timeout = timeout
        self._ctx: Any = None
        site_path = urlsplit(self.site_url).path.rstrip("/")
        library = self.root_path[len(site_path):].strip("/").split("/")[0]
        #: server-relative path of the document library (the folder every path starts from)
        self.library_path = f"{site_path}/{library}"
        self._known_dirs: set[str] = {self.library_path.lower()}
        self.capabilities = Capabilities(
            max_path_length=max(SHAREPOINT_MAX_PATH - len(self.root_path) - 1, 1),
            max_name_length=SHAREPOINT_MAX_NAME,
            forbidden_chars=SHAREPOINT_FORBIDDEN,
            case_insensitive=True,
            rename=True,
            streaming=True,
            checksum=None,
            max_simple_upload=SHAREPOINT_MAX_SIMPLE_UPLOAD,
            tested="real office365-rest-python-client against a local fake of the SharePoint REST API "
                   "(tests/connectors/remote)",
        )

    def __repr__(self) -> str:
        return f"SharePointRemote({self.name!r})"

    @staticmethod
    def _round_chunk(chunk_size: int) -> int:
        return max(CHUNK_UNIT, chunk_size - chunk_size % CHUNK_UNIT)

    # -- connection ---------------------------------------------------------------------------
    def _configure(self, ctx: Any) -> None:
        self._configure_auth(ctx)
        ctx.with_transport(verify=self._ca_bundle or True, timeout=(15, self._timeout))

    def connect(self) -> None:
        if self._ctx is not None:
            return
        try:
            from office365.sharepoint.client_context import ClientContext
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError(f"the SharePoint remote needs office365-rest-python-client: {e.name} "
                              "(pip install 'exporter[sharepoint]')") from None
        ctx = ClientContext(self.site_url)
        self._configure(ctx)
        self._ctx = ctx
        # one cheap authenticated request now: a wrong token or library is one clear error
        try:
            self._run(lambda c: c.web.get_folder_by_server_relative_path(self.root_path).get(),
                      self.root_path, "open the library folder")
        except NotFound:  # the folder is created on the first upload; the library must exist
            library = self.library_path
            try:
                self._run(lambda c: c.web.get_folder_by_server_relative_path(library).get(),
                          library, "open the library")
            except NotFound:
                raise SinkError("document library not found (check the URL)", context=f"{self.site_url} {library}") from None
        else:
            self._known_dirs.add(self.root_path.lower())

    def close(self) -> None:
        if self._ctx is not None:
            try:
                self._ctx.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort
                log.debug("closing the SharePoint context failed: %s", e)
            self._ctx = None

    # -- paths ------------------------------------------------------------------------------------
    def _full(self, path: str) -> str:
        return posixpath.join(self.root_path, *split_path(path, self.name))

    def _check_name_rules(self, full: str) -> None:
        """Refuse, before any upload, a path SharePoint would reject."""
        rel = full[len(self.root_path):].strip("/")
        if not rel:
            raise SinkError("empty path", context=self.name)
        for part in rel.split("/"):
            check_name_part(part, SHAREPOINT_MAX_NAME, SHAREPOINT_FORBIDDEN, "SharePoint", full)
            if part != part.strip(" "):
                raise SinkError(f"name {part!r} starts or ends with a space, which SharePoint does not allow", context=full)
            stem = part.split(".")[0].lower()
            if part.lower() in _RESERVED_NAMES or (stem in _RESERVED_NAMES and stem != ""):
                raise SinkError(f"name {part!r} is reserved in SharePoint", context=full)
            if "_vti_" in part.lower():
                raise SinkError(f"name {part!r} contains '_vti_', which SharePoint does not allow", context=full)
            if part.startswith("~$"):
                raise SinkError(f"name {part!r} starts with '~$', which SharePoint does not allow", context=full)
        if len(full) > SHAREPOINT_MAX_PATH:
            raise SinkError(f"path is {len(full)} characters long; SharePoint allows {SHAREPOINT_MAX_PATH}", context=full)

    # -- calls (errors translated by sharepoint_errors) -------------------------------------------
    def _run(self, build: Callable[[Any], T], path: str, what: str, *, retry: bool = True) -> T:
        """Queue the SDK call(s) made by ``build(ctx)``, execute them, translate and retry errors.

        ``NotFound`` (HTTP 404) is raised as is for callers to decide."""
        if self._ctx is None:
            self.connect()

        def attempt() -> T:
            ctx = self._ctx
            try:
                result = build(ctx)
                ctx.execute_query()
                return result
            except Exception as e:
                # a failed chain can leave queries behind: start from a clean, reconfigured context
                ctx.clear()
                self._configure(ctx)
                translated = translate_error(e, self.site_url, path, what)
                if translated is e:
                    raise
                raise translated from None

        if not retry:
            return attempt()
        return retry_call(attempt, attempts=self._attempts, max_delay=self._retry_max_delay,
                          describe=f"sharepoint {what} {path}")

    # -- Remote ---------------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        full = self._full(path)
        try:
            f = self._run(lambda c: c.web.get_file_by_server_relative_path(full).get(), full, "read file properties")
        except NotFound:
            return None
        return RemoteStat(size=int(f.properties.get("Length") or 0), checksum=None)

    def get(self, path: str, dest: BinaryIO) -> bool:
        """Download ``path`` into ``dest`` (streamed, ``$value``); False when it does not exist."""
        full = self._full(path)
        try:
            self._run(lambda c: c.web.get_file_by_server_relative_path(full).download_session(dest), full, "download")
        except NotFound:
            return False
        return True

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        top, found, folders = self._full(path), [], [""]  # (a NotFound folder: gone, or never there)
        while folders:
            rel = folders.pop()

            def build(c: Any, here: str = f"{top}/{rel}" if rel else top) -> tuple[Any, Any]:
                folder = c.web.get_folder_by_server_relative_path(here)
                files, subs = folder.files, folder.folders
                c.load(files).load(subs)
                return files, subs

            try:
                files, subs = self._run(build, f"{top}/{rel}", "list folder")
            except NotFound:
                continue
            found += [(posixpath.join(rel, f.properties["Name"]), RemoteStat(int(f.properties.get("Length") or 0)))
                      for f in files]
            folders += [posixpath.join(rel, d.properties["Name"]) for d in subs]
        return iter(found)

    def mkdir(self, path: str) -> None:
        full = self._full(path)
        if full != self.root_path:
            self._check_name_rules(full)
        self._ensure_folders(full)

    def _ensure_folders(self, folder: str) -> None:
        """Create ``folder`` and its missing parents, from the library down (the URL's folder too)."""
        rel = folder[len(self.library_path):].strip("/")
        parent = self.library_path
        for part in rel.split("/") if rel else []:
            here = f"{parent}/{part}"
            if here.lower() not in self._known_dirs:
                def look_up(c: Any, here: str = here) -> Any:
                    return c.web.get_folder_by_server_relative_path(here).get()

                def create(c: Any, parent: str = parent, part: str = part) -> Any:
                    return c.web.get_folder_by_server_relative_path(parent).folders.add(part)

                try:
                    self._run(look_up, here, "look up folder")
                except NotFound:
                    try:
                        self._run(create, here, "create folder")
                    except NotFound:
                        raise SinkError("the parent folder disappeared while creating folders", context=here) from None
                self._known_dirs.add(here.lower())
            parent = here

    def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            self._run(lambda c: c.web.get_file_by_server_relative_path(full).delete_object(), full, "delete")
        except NotFound:
            return

    def rename(self, src: str, dst: str) -> None:
        from office365.runtime.queries.service_operation import ServiceOperationQuery
        from office365.sharepoint.types.resource_path import ResourcePath as SPResPath
        from office365.sharepoint.utilities.move_copy_options import MoveCopyOptions
        from office365.sharepoint.utilities.move_copy_util import MoveCopyUtil

        full_src, full_dst = self._full(src), self._full(dst)
        self._check_name_rules(full_dst)

        def build(ctx: Any) -> None:
            # SP.MoveCopyUtil.MoveFileByPath(srcPath, destPath, overwrite, options): both paths in
            # the body (no URL-length limit, '%' and '#' allowed) and an atomic replace of dst
            payload = {
                "srcPath": SPResPath.create_absolute(ctx.base_url, full_src),
                "destPath": SPResPath.create_absolute(ctx.base_url, full_dst),
                "overwrite": True,
                "options": MoveCopyOptions(KeepBoth=False),
            }
            ctx.add_query(ServiceOperationQuery(MoveCopyUtil(ctx), "MoveFileByPath", None, payload, None, None, True))

        try:
            self._run(build, full_dst, f"move {full_src} to")
        except NotFound:
            raise SinkError(f"cannot rename: {full_src} does not exist (or the target folder is missing)",
                            context=self.site_url) from None

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        if size > self.simple_upload_limit:
            self.put_chunked(path, data, size, self.chunk_size)
            return
        full = self._full(path)
        self._check_name_rules(full)
        parent, name = posixpath.split(full)
        f = self._add(parent, name, read_exactly(data, size, full), full)
        self._verify(f, full, size)

    def _add(self, parent: str, name: str, content: bytes, full: str) -> Any:
        """Files/add with overwrite; creates the parent folders when missing."""
        def build(c: Any) -> Any:
            return c.web.get_folder_by_server_relative_path(parent).files.add(name, content, True)

        try:
            return self._run(build, full, "upload")
        except NotFound:
            self._known_dirs = {self.library_path.lower()}  # something was removed: look again
            self._ensure_folders(parent)
            try:
                return self._run(build, full, "upload")
            except NotFound:
                raise SinkError("the folder for this file cannot be found", context=full) from None

    def put_chunked(self, path: str, data: BinaryIO, size: int, chunk_size: int) -> None:
        full = self._full(path)
        self._check_name_rules(full)
        chunk_size = self._round_chunk(chunk_size)
        if size <= chunk_size:
            parent, name = posixpath.split(full)
            self._verify(self._add(parent, name, read_exactly(data, size, full), full), full, size)
            return
        parent, name = posixpath.split(full)
        reader = OffsetReader(data, full)
        # the session needs an existing file: an empty placeholder (the sink uploads to a .partial)
        self._add(parent, name, b"", full)
        upload_id = str(uuid.uuid4())
        state: dict[str, Any] = {"offset": 0, "started": False, "resync": False, "done": None}

        def file_of(c: Any) -> Any:
            return c.web.get_file_by_server_relative_path(full)

        def resync() -> None:
            """Ask the server how many bytes of the session it holds (``GetUploadStatus``)."""
            state["resync"] = False
            try:
                status = self._run(lambda c: file_of(c).get_upload_status(upload_id), full,
                                   "read upload status", retry=False)
            except NotFound:
                status = None
            if status is None or status.properties.get("ExpectedContentRange") is None:
                if not state["started"]:
                    return  # the start never reached the server: start again from 0
                st = self.stat(path)
                if st is not None and st.size == size:  # the finish was committed, its answer was lost
                    state["done"] = True
                    return
                raise TransientSinkError("the SharePoint upload session was lost", context=full)
            expected = str(status.properties["ExpectedContentRange"]).split("-", 1)[0].strip()
            server_offset = int(expected or 0)
            if not 0 <= server_offset <= size:
                raise SinkError(f"SharePoint reports offset {server_offset} for a {size}-byte upload", context=full)
            if server_offset != state["offset"]:
                log.info("sharepoint %s: resuming upload session at offset %d (we were at %d)",
                         full, server_offset, state["offset"])
            state["started"] = True
            state["offset"] = server_offset

        def step() -> None:
            if state["resync"]:
                resync()
                if state["done"]:
                    return
            offset = state["offset"]
            buf = reader.read_at(offset, min(chunk_size, size - offset))
            last = offset + len(buf) >= size
            try:
                if not state["started"]:
                    res = self._run(lambda c: file_of(c).start_upload(upload_id, buf), full,
                                    "start upload session", retry=False)
                    state["started"] = True
                elif last:
                    f = self._run(lambda c: file_of(c).finish_upload(upload_id, offset, buf), full,
                                  f"finish upload at offset {offset}", retry=False)
                    state["done"] = f
                    return
                else:
                    res = self._run(lambda c: file_of(c).continue_upload(upload_id, offset, buf), full,
                                    f"upload chunk at offset {offset}", retry=False)
            except TransientSinkError:
                state["resync"] = True
                raise
            except NotFound:
                raise SinkError("the file or its upload session disappeared during the upload", context=full) from None
            new_offset = int(res.value)
            if new_offset != offset + len(buf):
                log.info("sharepoint %s: server at offset %d after a chunk sent at %d", full, new_offset, offset)
            state["offset"] = new_offset

        while state["done"] is None:
            retry_call(step, attempts=self._attempts, max_delay=self._retry_max_delay,
                       describe=f"sharepoint upload {full}")
        if state["done"] is True:
            return
        self._verify(state["done"], full, size)

    def _verify(self, f: Any, full: str, size: int) -> None:
        length = f.properties.get("Length") if f is not None else None
        if length is not None and int(length) != size:
            raise SinkError(f"SharePoint stored {length} bytes, expected {size}", context=full)


def _auth_configurer(options: dict, site_url: str) -> Callable[[Any], None]:
    """Pick the credential source (env variables / files only) and return ``ctx -> None``."""
    token_env = options["token_env"] or "SHAREPOINT_TOKEN"
    token = read_secret(options, "token", "SharePoint access token", default_env="SHAREPOINT_TOKEN")
    if token:
        def configure_token(ctx: Any) -> None:
            from office365.runtime.auth.token_response import TokenResponse

            ctx.with_access_token(lambda: TokenResponse(access_token=token, token_type="Bearer"))

        return configure_token
    tenant = options["tenant"] or os.environ.get("SHAREPOINT_TENANT")
    client_id = options["client_id"] or os.environ.get("SHAREPOINT_CLIENT_ID")
    secret = read_secret(options, "client_secret", "SharePoint client secret", default_env="SHAREPOINT_CLIENT_SECRET")
    cert_path = options["cert_path"]
    if tenant and client_id and secret:
        def configure_secret(ctx: Any) -> None:
            ctx.with_client_secret(tenant, client_id, secret)

        return configure_secret
    if tenant and client_id and cert_path:
        if not options["thumbprint"]:
            raise ConfigError("SharePoint certificate login needs the 'thumbprint' option with 'cert_path'")
        if not os.path.exists(os.path.expanduser(cert_path)):
            raise ConfigError(f"SharePoint certificate file not found: {cert_path}")
        passphrase = secrets.read_secret(env="SHAREPOINT_CERT_PASSPHRASE", what="certificate passphrase",
                                         required=False) or None

        def configure_cert(ctx: Any) -> None:
            ctx.with_client_certificate(tenant, client_id, options["thumbprint"], os.path.expanduser(cert_path),
                                        passphrase=passphrase)

        return configure_cert
    raise ConfigError(
        f"no SharePoint credentials for {site_url}: set {token_env} (or token_file), or SHAREPOINT_TENANT + "
        "SHAREPOINT_CLIENT_ID with SHAREPOINT_CLIENT_SECRET (or cert_path + thumbprint)"
    )


def create_remote(url: str, options: dict | None = None) -> SharePointRemote:
    """``sharepoint://host/sites/SITE/LIBRARY/path`` -> a SharePointRemote."""
    options = SHAREPOINT.parse_options(options or {})
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("sharepoint", "sharepoint+https", "sharepoint+http"):
        raise ConfigError(f"not a SharePoint URL: {parts.scheme}://...")
    if parts.username or parts.password:
        raise ConfigError("a SharePoint URL carries no credentials: use SHAREPOINT_TOKEN or the client credentials")
    if not parts.hostname:
        raise ConfigError("a SharePoint URL needs the host: sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY")
    http_scheme = "http" if scheme == "sharepoint+http" else "https"
    segments = [unquote(s) for s in parts.path.split("/") if s]
    site_path = options["site_path"]
    if site_path:
        site_segments = [s for s in str(site_path).split("/") if s]
        if [s.lower() for s in segments[: len(site_segments)]] != [s.lower() for s in site_segments]:
            raise ConfigError(f"site_path {site_path} is not a prefix of the URL path {parts.path}")
    elif segments and segments[0].lower() in ("sites", "teams", "personal"):
        site_segments = segments[:2]
    else:
        site_segments = []
    rest = segments[len(site_segments):]
    if len(site_segments) == 1 or not rest:
        raise ConfigError("a SharePoint URL names the site and the document library: "
                          "sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY[/folder]")
    site = "/" + "/".join(site_segments) if site_segments else ""
    site_url = f"{http_scheme}://{parts.netloc}{site}"
    root_path = site + "/" + "/".join(rest)
    return SharePointRemote(site_url, root_path, configure_auth=_auth_configurer(options, site_url),
                            ca_bundle=options["ca_bundle"] or None, **upload_options(options))
