"""HTTP client for the Kizeo Forms REST API v3.

One ``requests.Session`` per client (connection pool sized to the worker count, connect/read
timeouts, TLS verified by default with TLS 1.2 as the floor). Every call goes through
``exporter.retry.retry_call``: 429/502/503/504, resets and timeouts are retried with exponential
backoff and jitter, and a ``Retry-After`` header (seconds or HTTP date) is honoured.

Errors are translated here, where they enter our code (see ``exporter.errors``)::

    401 403 410                    -> AuthError        (after one token renewal for a login token)
    404 501, "unknown id" messages -> NotFoundError
    429                            -> RateLimitError   (transient, carries retry_after)
    502 503 504, resets, timeouts  -> TransientSourceError
    other 4xx/5xx, status:error    -> SourceError / BadAnswerError with the server's message
    malformed JSON                 -> BadAnswerError naming the URL path

The token is secret: it is sent raw in the ``Authorization`` header (no ``Bearer``), comes from a
``TokenProvider`` (``tokens.py``: environment variable, file, or legacy ``POST /login`` with
credentials from environment variables) and never appears in a repr, a log line or an error message.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from exporter.errors import (
    AuthError,
    BadAnswerError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    SourceError,
    TransientSourceError,
)
from exporter.fastjson import loads as json_loads
from exporter.retry import parse_retry_after, retry_call

from .adaptive import AIMD
from .tokens import TokenProvider
from .transport import HeaderAuth, TLSAdapter

log = logging.getLogger("exporter.kizeo")

DEFAULT_BASE_URL = "https://forms.kizeo.com/rest/v3"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_NOT_FOUND_HINTS = ("unknown", "not found", "does not exist", "doesn't exist", "introuvable",
                    "inexistant", "n'existe pas", "mismatch", "invalid id")


class StreamInterrupted(TransientSourceError):
    """A download broke after it started: worth restarting from the beginning."""


class AnswerTimeout(TransientSourceError):
    """The service (or its gateway) gave up on an answer: 504, or none within the read timeout.
    Retried like any transient error, except by a windowed read (``windows.py``), which asks for
    less instead."""


def mask_url(url: str) -> str:
    """A URL without user info, query or fragment (what we show in logs and descriptions)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = "***@" + host
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _server_message(resp: requests.Response) -> str:
    """The ``message`` of an error envelope, or a short piece of the body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error")
        if msg:
            return str(msg)[:500]
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:200] if text else (resp.reason or "no message")


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
        # proxies and REQUESTS_CA_BUNDLE from the environment still apply, read once here (every
        # request goes to the one host of base_url; reading them per request cost ~0.3 ms of CPU
        # each); every request passes its own ``auth`` so a ~/.netrc entry can never replace the
        # token header
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
            except requests.exceptions.SSLError as e:
                raise SourceError(
                    f"TLS handshake with {mask_url(self.base_url)} failed: {self._redact(_ssl_reason(e))} "
                    "(certificate verification is on; give a CA bundle for a private certificate authority)",
                ) from None
            except requests.exceptions.ReadTimeout:
                where = urlsplit(self.base_url).hostname
                raise AnswerTimeout(f"{where} sent no answer within {self.timeout[1]:g} s (read timeout; --timeout "
                                    "sets it)", context=f"{method} {path}") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                raise self._connection_error(e, method, path) from None
            except requests.exceptions.RequestException as e:
                raise SourceError(self._redact(f"request failed: {type(e).__name__}: {e}"),
                                  context=f"{method} {path}") from None
            if resp.status_code == 401 and auth and self.tokens.renewable and not renewed:
                resp.close()
                log.info("the service refused the token on %s %s; logging in again", method, path)
                self.tokens.invalidate(token)
                renewed = True
                continue
            if resp.status_code >= 300:
                self._raise_for_status(resp, method, path)
            return resp

    def _connection_error(self, e: Exception, method: str, path: str) -> SourceError:
        """A connection failure in words: refused, DNS name not found, timed out, reset. A name
        the DNS says does not exist is terminal (retrying cannot help); the rest may pass."""
        parts = urlsplit(self.base_url)
        where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        ctx = f"{method} {path}"
        cause = _find_cause(e, (socket.gaierror, ConnectionRefusedError, ConnectionResetError, TimeoutError))
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return TransientSourceError(f"connecting to {where} timed out after {self.timeout[0]:g} s", context=ctx)
        if isinstance(cause, socket.gaierror):
            if cause.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                return SourceError(f"DNS name not found: {parts.hostname} (check the --source URL)", context=ctx)
            return TransientSourceError(f"DNS lookup of {parts.hostname} failed: {cause.strerror or cause}", context=ctx)
        if isinstance(cause, ConnectionRefusedError):
            return TransientSourceError(f"connection refused by {where} (nothing listens there: check the host "
                                        "and port of --source)", context=ctx)
        if isinstance(cause, ConnectionResetError):
            return TransientSourceError(f"connection reset by {where}", context=ctx)
        if isinstance(cause, TimeoutError):
            return TransientSourceError(f"connecting to {where} timed out", context=ctx)
        if isinstance(e, requests.exceptions.ChunkedEncodingError):
            return TransientSourceError(f"connection to {where} cut off in the middle of an answer", context=ctx)
        return TransientSourceError(self._redact(f"connection to {where} failed: {_innermost(e)}"), context=ctx)

    def _raise_for_status(self, resp: requests.Response, method: str, path: str) -> None:
        status = resp.status_code
        try:
            msg = self._redact(_server_message(resp))
        finally:
            resp.close()
        ctx = f"{method} {path}"
        if status == 429:
            raise RateLimitError(f"rate limited (HTTP 429): {msg}", context=ctx,
                                 retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status in RETRY_STATUSES:
            cls = AnswerTimeout if status == 504 else TransientSourceError
            raise cls(f"HTTP {status}: {msg}", context=ctx, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status in (401, 403, 410):
            raise AuthError(f"the service refused the credentials (HTTP {status}): {msg}", context=ctx)
        if status in (404, 501) or (status == 400 and any(h in msg.lower() for h in _NOT_FOUND_HINTS)):
            raise NotFoundError(f"not found (HTTP {status}): {msg}{self._base_url_hint(status)}", context=ctx)
        if 300 <= status < 400:
            raise SourceError(f"unexpected redirect (HTTP {status}) to {mask_url(resp.headers.get('Location', ''))}",
                              context=ctx)
        raise SourceError(f"the service answered HTTP {status}: {msg}", context=ctx)

    def _base_url_hint(self, status: int) -> str:
        """A 404 from a base URL that does not end with /rest/v3 is most likely that URL's fault."""
        parts = urlsplit(self.base_url)
        if status != 404 or parts.path.rstrip("/").endswith("/rest/v3"):
            return ""
        fixed = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/rest/v3", query="", fragment=""))
        return f" (the base URL has no /rest/v3: did you mean {mask_url(fixed)}?)"

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
                if any(h in msg.lower() for h in _NOT_FOUND_HINTS):
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
        path = f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/medias/{_seg(name)}"

        def attempt() -> requests.Response:
            with self._slot():
                return self._send_once("GET", path, stream=True)

        return self._retry(attempt, f"GET {path}")

    def stream_media(self, form_id: str, data_id: str, name: str,
                     chunk_size: int = 1 << 16) -> tuple[Iterator[bytes], str]:
        """``(chunks, content_type)``: the media bytes, streamed, never all in memory. Opening
        the download is retried here; a connection lost mid-stream (or a body shorter than its
        Content-Length) raises ``StreamInterrupted`` from the iterator, and the caller restarts
        the download (see ``WebSource``)."""
        path = f"/forms/{_seg(form_id)}/data/{_seg(data_id)}/medias/{_seg(name)}"
        resp = self.media_response(form_id, data_id, name)
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

        return chunks(), ctype

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


def _json_of(resp: requests.Response) -> Any:
    """The JSON of an answer. A UTF-8 one (JSON's own encoding, what requests assumes for
    application/json) is decoded from its bytes by ``exporter.fastjson`` (orjson when installed,
    the same result as the standard library, about 3x faster); anything else by requests."""
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


def _chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and the exceptions it wraps (args, ``reason`` of urllib3's errors, cause, context)."""
    seen: set[int] = set()
    todo: list[BaseException] = [e]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _find_cause(e: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    return next((c for c in _chain(e) if isinstance(c, kinds)), None)


def _innermost(e: BaseException) -> str:
    *_, last = _chain(e)
    return f"{type(last).__name__}: {last}"[:300]


def _ssl_reason(e: Exception) -> str:
    """The innermost SSL error's reason (certificate verify failed, wrong version, ...)."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return getattr(cur, "verify_message", None) or cur.reason or str(cur)
        nxt = None
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                nxt = arg
                break
        cur = nxt or cur.__cause__ or cur.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(e) else str(e)[:200]

