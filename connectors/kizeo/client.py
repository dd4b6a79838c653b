"""HTTP client for the Kizeo Forms REST API v3.

One ``requests.Session`` per client (connection pool sized to the worker count, connect/read
timeouts, TLS verified by default with TLS 1.2 as the floor). Every call goes through
``exporter.retry.retry_call``: 429/502/503/504, resets and timeouts are retried with exponential
backoff and jitter, and a ``Retry-After`` header (seconds or HTTP date) is honoured.

Errors are translated where they enter our code: HTTP statuses and connection failures by
``http_errors`` (the table is there; a 401 first renews a login token once, here); an answer that
is not JSON, or a ``status: error`` envelope, here (BadAnswerError naming the URL path, or
NotFoundError when its message says the id is unknown).

The token is secret: it is sent raw in the ``Authorization`` header (no ``Bearer``), comes from a
``TokenProvider`` (``tokens.py``: environment variable, file, or legacy ``POST /login`` with
credentials from environment variables) and never appears in a repr, a log line or an error message.
"""
from __future__ import annotations

import contextlib
import email.message
import email.utils
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from exporter.errors import (
    AuthError,
    BadAnswerError,
    ConfigError,
    NotFoundError,
    TransientSourceError,
)
from exporter.fastjson import loads as json_loads
from exporter.retry import retry_call
from exporter.secrets import mask_url

from .adaptive import AIMD
from .http_errors import (
    NOT_FOUND_HINTS,
    AnswerTimeout,
    StreamInterrupted,
    raise_for_status,
    request_error,
)
from .tokens import TokenProvider
from .transport import HeaderAuth, TLSAdapter

log = logging.getLogger("exporter.kizeo")

DEFAULT_BASE_URL = "https://forms.kizeo.com/rest/v3"


class KizeoClient:
    """A thread-safe client for one Kizeo Forms account."""

    def __init__(
        self,
        token: TokenProvider,
        *,
        base_url: str = DEFAULT_BASE_URL,
        workers: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        verify: bool = True,
        ca_bundle: str | os.PathLike | None = None,
        attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "exporter (Kizeo Forms data reversibility)",
        limiter: AIMD | None = None,
    ):
        if not isinstance(token, TokenProvider):
            raise ConfigError("the client needs a TokenProvider (EnvToken, FileToken, LoginToken)")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid web service URL {mask_url(base_url)!r} (expected https://host/rest/v3)")
        if parts.username or parts.password:
            raise ConfigError("do not put credentials in the web service URL; use a token variable or file")
        self.base_url = base_url.rstrip("/")
        self.tokens = token
        self.timeout = (connect_timeout, read_timeout)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.session = requests.Session()
        # proxies and REQUESTS_CA_BUNDLE from the environment still apply, read once here: every
        # request goes to the one host of base_url, so reading them again per request would spend
        # CPU on every request for the same answer; every request passes its own ``auth`` so a
        # ~/.netrc entry can never replace the token header
        env = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(env["proxies"])
        self.session.trust_env = False
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        if ca_bundle is not None:
            if not os.path.exists(ca_bundle):
                raise ConfigError(f"CA bundle {os.fspath(ca_bundle)} does not exist")
            self.session.verify = os.fspath(ca_bundle)
        elif verify is False:
            log.warning("TLS certificate verification is OFF for %s", mask_url(self.base_url))
            self.session.verify = False
        else:
            self.session.verify = env["verify"] or True
        size = max(4, workers + 2)
        adapter = TLSAdapter(pool_connections=2, pool_maxsize=size, max_retries=0,
                             verify=self.session.verify is not False)
        self.session.mount("https://", adapter)
        self.session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=size, max_retries=0))
        self._adapter = adapter
        self.limiter = limiter  # --workers auto: requests in flight adapted (adaptive.py)
        self._complete_lists = True  # False once the service answered that /lists/{id}/complete is absent

    # ---- housekeeping -----------------------------------------------------------------------
    @property
    def description(self) -> str:
        return mask_url(self.base_url)

    def __repr__(self) -> str:
        return f"KizeoClient({self.description!r}, token={self.tokens!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        for s in self.tokens.secrets():
            if s:
                text = text.replace(s, "***")
        return text

    # ---- one request ------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.base_url + path

    def _send_once(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
                   stream: bool = False, auth: bool = True) -> requests.Response:
        """One attempt (plus one immediate retry after a token renewal on 401)."""
        renewed = False
        while True:
            token = self.tokens.token(self) if auth else None
            try:
                resp = self.session.request(
                    method, self._url(path), json=body, params=params, auth=HeaderAuth(token),
                    timeout=self.timeout, stream=stream, allow_redirects=False,
                    verify=self.session.verify,  # per request: an explicit CA bundle beats REQUESTS_CA_BUNDLE
                )
            except requests.exceptions.RequestException as e:
                raise request_error(e, self.base_url, self.timeout, f"{method} {path}", self._redact) from None
            if resp.status_code == 401 and token is not None and self.tokens.renewable and not renewed:
                resp.close()
                log.info("the service refused the token on %s %s; logging in again", method, path)
                self.tokens.invalidate(token)
                renewed = True
                continue
            if resp.status_code >= 300:
                raise_for_status(resp, self.base_url, f"{method} {path}", self._redact)
            return resp

    def _json(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
              auth: bool = True, retry_timeouts: bool = True) -> Any:
        def attempt() -> Any:
            # a login (auth=False) runs inside the request that asked for a token, which holds a
            # place already: waiting for a second one could wait for itself (--workers auto)
            with self._slot() if auth else contextlib.nullcontext():
                return read_once()

        def read_once() -> Any:
            resp = self._send_once(method, path, body=body, params=params, auth=auth)
            try:
                data = _json_of(resp)
            except ValueError:
                ctype = resp.headers.get("Content-Type", "?")
                raise BadAnswerError(f"the answer is not valid JSON (HTTP {resp.status_code}, {ctype})",
                                     context=f"{method} {path}") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
                raise TransientSourceError("connection lost while reading the answer",
                                           context=f"{method} {path}") from None
            finally:
                resp.close()
            if isinstance(data, dict) and data.get("status") == "error":
                msg = self._redact(str(data.get("message") or "the service reported an error"))
                if any(h in msg.lower() for h in NOT_FOUND_HINTS):
                    raise NotFoundError(msg, context=f"{method} {path}")
                raise BadAnswerError(msg, context=f"{method} {path}")
            return data

        retryable = None if retry_timeouts else _retryable_but_timeouts
        return self._retry(attempt, f"{method} {path}", retryable)

    def _slot(self) -> contextlib.AbstractContextManager:
        """One place among the requests in flight (``--workers auto``); no gate otherwise."""
        return self.limiter.slot() if self.limiter is not None else contextlib.nullcontext()

    def _retry(self, fn: Callable[[], Any], describe: str,
               is_retryable: Callable[[BaseException], bool] | None = None) -> Any:
        return retry_call(fn, attempts=self.attempts, base_delay=self.backoff, max_delay=self.max_backoff,
                          describe=describe, sleep=self.sleep, is_retryable=is_retryable)

    @staticmethod
    def _key(payload: Any, keys: tuple[str, ...], context: str) -> Any:
        """``payload[key]`` for the first key present, at top level or under ``data``."""
        if not isinstance(payload, dict):
            raise BadAnswerError(f"expected a JSON object, got {type(payload).__name__}", context=context)
        scopes = [payload]
        if isinstance(payload.get("data"), dict):
            scopes.append(payload["data"])
        for scope in scopes:
            for k in keys:
                if k in scope:
                    return scope[k]
        raise BadAnswerError(f"the answer has none of: {', '.join(keys)}", context=context)

    def _list(self, payload: Any, keys: tuple[str, ...], context: str) -> list:
        value = self._key(payload, keys, context)
        if value is None:
            return []
        if isinstance(value, dict):  # some answers key objects by id
            value = list(value.values())
        if not isinstance(value, list):
            raise BadAnswerError(f"'{keys[0]}' is a {type(value).__name__}, expected a list", context=context)
        return value

    # ---- API --------------------------------------------------------------------------------
    def login(self, user: str, password: str, company: str) -> str:
        """Legacy ``POST /login``: returns a token (secret; never logged)."""
        payload = self._json("POST", "/login", body={"user": user, "password": password, "company": company},
                             auth=False)
        token = self._key(payload, ("token",), "POST /login")
        if not isinstance(token, str) or not token:
            raise AuthError("login answered without a token", context="POST /login")
        return token

    def list_forms(self) -> list[dict]:
        return self._list(self._json("GET", "/forms"), ("forms",), "GET /forms")

    def get_form(self, form_id: str) -> dict:
        path = f"/forms/{_seg(form_id)}"
        form = self._key(self._json("GET", path), ("form",), f"GET {path}")
        if not isinstance(form, dict):
            raise BadAnswerError("'form' is not an object", context=f"GET {path}")
        return form

    def list_data_ids(self, form_id: str) -> list[dict]:
        """Summaries of every submission of a form (``data/all``): id, record_number, times."""
        path = f"/forms/{_seg(form_id)}/data/all"
        return self._list(self._json("GET", path), ("data",), f"GET {path}")

    def get_data(self, form_id: str, data_id: str) -> dict:
        """One submission, nested shape (``fields`` with ``{"value": ...}`` cells)."""
        path = f"/forms/{_seg(form_id)}/data/{_seg(data_id)}"
        data = self._key(self._json("GET", path), ("data",), f"GET {path}")
        if not isinstance(data, dict):
            raise BadAnswerError(f"'data' is a {type(data).__name__}, expected an object", context=f"GET {path}")
        return data

    def advanced(self, form_id: str, filters: list | None = None, order: list | None = None,
                 format: str = "basic", *, retry_timeouts: bool = True) -> list[dict]:
        """``POST data/advanced``: flat records matching ``filters`` in ``order``. With
        ``retry_timeouts=False`` an ``AnswerTimeout`` is raised at once (the caller asks for less)."""
        path = f"/forms/{_seg(form_id)}/data/advanced"
        body: dict[str, Any] = {"filters": filters or [], "format": format}
        if order:
            body["order"] = order
        payload = self._json("POST", path, body=body, retry_timeouts=retry_timeouts)
        return self._list(payload, ("data",), f"POST {path}")

    def unread(self, form_id: str, action: str, limit: int = 100, include_updated: bool = True) -> list[dict]:
        """Flat records not yet marked read for ``action`` (at most ``limit``), every level:
        ``format=basic`` (the service's default, ``simple``, leaves the sub-forms out)."""
        path = f"/forms/{_seg(form_id)}/data/unread/{_seg(action)}/{int(limit)}"
        params = {"includeupdated": ""} if include_updated else {}
        params["format"] = "basic"
        return self._list(self._json("GET", path, params=params), ("data",), f"GET {path}")

    def mark_read(self, form_id: str, action: str, ids: list[str]) -> None:
        """``POST markasreadbyaction``: only after every destination committed these ids."""
        if not ids:
            return
        path = f"/forms/{_seg(form_id)}/markasreadbyaction/{_seg(action)}"
        self._json("POST", path, body={"data_ids": [str(i) for i in ids]})

    def media_response(self, form_id: str, data_id: str, name: str) -> requests.Response:
        """Open a media download (status checked, body not read yet). Retried until it opens.
        With ``--workers auto`` the opening holds a place among the requests in flight."""
        return self._open_download(f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/medias/{_seg(name)}")

    def _open_download(self, path: str) -> requests.Response:
        def attempt() -> requests.Response:
            with self._slot():
                return self._send_once("GET", path, stream=True)

        return self._retry(attempt, f"GET {path}")

    def stream_media(self, form_id: str, data_id: str, name: str,
                     chunk_size: int = 1 << 16) -> tuple[Iterator[bytes], str]:
        """``(chunks, content_type)``: the media bytes, streamed, never all in memory (see
        ``download``)."""
        d = self.download(f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/medias/{_seg(name)}", chunk_size)
        return d.chunks, d.content_type

    def download(self, path: str, chunk_size: int = 1 << 16) -> Download:
        """A file the service serves at ``path`` (a media, a document): its bytes streamed, never
        all in memory, its content type and the file name its ``Content-Disposition`` gives.
        Opening the download is retried here; a connection lost mid-stream (or a body shorter
        than its Content-Length) raises ``StreamInterrupted`` from the iterator, and the caller
        restarts the download (see ``WebSource``)."""
        resp = self._open_download(path)
        ctype = (resp.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()

        def chunks() -> Iterator[bytes]:
            try:
                for chunk in resp.iter_content(chunk_size):
                    if chunk:
                        yield chunk
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.Timeout):
                raise StreamInterrupted("connection lost while downloading", context=f"GET {path}") from None
            finally:
                resp.close()

        return Download(chunks(), ctype, attachment_filename(resp.headers.get("Content-Disposition")))

    # vendor documents: the routes the vendor's own clients call (n8n and Activepieces nodes)
    def exports(self, form_id: str) -> list[dict]:
        """``GET /forms/{f}/exports``: the form's custom Word/Excel export templates."""
        path = f"/forms/{_seg(form_id)}/exports"
        return [e for e in self._list(self._json("GET", path), ("exports",), f"GET {path}") if isinstance(e, dict)]

    @staticmethod
    def pdf_path(form_id: str, data_id: str) -> str:
        """A submission's standard PDF: ``GET /forms/{f}/data/{d}/pdf``."""
        return f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/pdf"

    @staticmethod
    def export_path(form_id: str, data_id: str, export_id: str) -> str:
        """A submission through a custom export, in the template's format (docx, xlsx):
        ``GET /forms/{f}/data/{d}/exports/{exportId}``."""
        return f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/exports/{_seg(export_id)}"

    @staticmethod
    def form_picture_path(form_id: str, data_id: str, name: str) -> str:
        """A form's layout picture (a ``fixed_image`` field), seen through one of its submissions:
        ``GET /forms/{f}/data/{d}/form_pictures/{name}``."""
        return f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/form_pictures/{_seg(name)}"

    def users(self) -> list[dict]:
        return self._list(self._json("GET", "/users"), ("users",), "GET /users")

    def groups(self) -> list[dict]:
        return self._list(self._json("GET", "/groups"), ("groups",), "GET /groups")

    def group_users(self, group_id: str) -> list[dict]:
        path = f"/group/{_seg(group_id)}/users"
        return self._list(self._json("GET", path), ("users", "data"), f"GET {path}")

    def group_leaders(self, group_id: str) -> list[dict]:
        path = f"/group/{_seg(group_id)}/leaders"
        return self._list(self._json("GET", path), ("leaders", "users", "data"), f"GET {path}")

    def lists(self) -> list[dict]:
        return self._list(self._json("GET", "/lists"), ("lists",), "GET /lists")

    def get_list(self, list_id: str) -> dict:
        """An external list with every item: ``GET /lists/{id}/complete`` ("without taking in
        account filters"); ``GET /lists/{id}`` honours the list's filters, so it is read only when
        the service has no ``/complete`` route (404/501), with a warning, once per client."""
        path = f"/lists/{_seg(list_id)}"
        if self._complete_lists:
            try:
                payload = self._json("GET", path + "/complete")
            except NotFoundError:
                payload = self._json("GET", path)  # an unknown id fails here too: not the route then
                self._complete_lists = False
                log.warning("the service has no GET /lists/{id}/complete: external lists are read with "
                            "GET /lists/{id}, which applies each list's filters (items may be missing)")
        else:
            payload = self._json("GET", path)
        lst = self._key(payload, ("list",), f"GET {path}")
        if not isinstance(lst, dict):
            raise BadAnswerError("'list' is not an object", context=f"GET {path}")
        return lst


@dataclass
class Download:
    """An open download: ``chunks`` (read once), its content type, and the file name from its
    ``Content-Disposition`` (None when it gives none)."""

    chunks: Iterator[bytes]
    content_type: str
    filename: str | None


def attachment_filename(header: str | None) -> str | None:
    """The file name a ``Content-Disposition`` gives (RFC 6266): ``filename*`` (RFC 5987/2231:
    charset, language, percent-encoded bytes) before ``filename``, whatever their order; None when
    there is neither or the name is empty. The name is returned as given: it is not a path, and
    whoever stores it makes it safe (hostile names are normal input)."""
    if not header:
        return None
    msg = email.message.Message()
    try:
        msg["Content-Disposition"] = header
        params = msg.get_params(header="content-disposition") or []
    except (ValueError, TypeError):
        return None
    plain = extended = None
    for key, value in params[1:]:
        if key.lower() != "filename":
            continue
        if isinstance(value, tuple):  # filename*=charset'lang'bytes, decoded by the email package
            extended = email.utils.collapse_rfc2231_value(value, errors="replace")
        else:
            plain = value
    name = extended if extended else plain
    return name or None


def _json_of(resp: requests.Response) -> Any:
    """The JSON of an answer. A UTF-8 one (JSON's own encoding, what requests assumes for
    application/json) is decoded from its bytes by ``exporter.fastjson`` (orjson when installed,
    the same result as the standard library, faster: see docs/benchmarks.md); anything else by
    requests."""
    enc = resp.encoding
    if enc is not None and enc.lower().replace("-", "").replace("_", "") == "utf8":
        return json_loads(resp.content)
    return resp.json()


def _retryable_but_timeouts(e: BaseException) -> bool:
    return isinstance(e, TransientSourceError) and not isinstance(e, AnswerTimeout)


def _seg(value: Any) -> str:
    """One URL path segment: everything escaped, slashes included."""
    text = str(value)
    if not text:
        raise ConfigError("empty id in a web service path")
    return quote(text, safe="")


