"""The Kizeo service's failures as our errors, translated where they enter the code (see
``exporter.errors``)::

    401 403 410                    -> AuthError        (the client first renews a login token once)
    404 501, "unknown id" messages -> NotFoundError    (with a hint when the base URL lacks /rest/v3)
    429                            -> RateLimitError   (transient, carries retry_after)
    502 503 504, resets, timeouts  -> TransientSourceError (504 and read timeouts: AnswerTimeout)
    TLS failures, other 4xx/5xx    -> SourceError with the server's message
    a lost connection, DNS         -> in words: refused, name not found (terminal), reset, timed out

Every message goes through the client's ``redact`` (the token never appears) and URLs through
``exporter.secrets.mask_url`` (the one rule for URLs).
"""
from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests

from exporter.errors import AuthError, NotFoundError, RateLimitError, SourceError, TransientSourceError
from exporter.retry import parse_retry_after
from exporter.secrets import mask_url

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: words of an error message that mean "no such id" (the service also answers 400 for those)
NOT_FOUND_HINTS = ("unknown", "not found", "does not exist", "doesn't exist", "introuvable",
                   "inexistant", "n'existe pas", "mismatch", "invalid id")


class StreamInterrupted(TransientSourceError):
    """A download broke after it started: worth restarting from the beginning."""


class ServerFailure(SourceError):
    """The service failed on its side (HTTP 500 and the like, not retried): for a vendor document,
    it could not produce that one (``documents``: a warning, not a failed run)."""


class AnswerTimeout(TransientSourceError):
    """The service (or its gateway) gave up on an answer: 504, or none within the read timeout.
    Retried like any transient error, except by a windowed read (``windows.py``), which asks for
    less instead."""


def server_message(resp: requests.Response) -> str:
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


def request_error(e: requests.exceptions.RequestException, base_url: str, timeout: tuple[float, float], ctx: str,
                  redact: Callable[[str], str]) -> SourceError:
    """A request that got no answer, as our error: a TLS failure (terminal), no answer within the
    read timeout (``AnswerTimeout``), a connection failure in words, anything else terminal."""
    if isinstance(e, requests.exceptions.SSLError):
        return SourceError(
            f"TLS handshake with {mask_url(base_url)} failed: {redact(ssl_reason(e))} "
            "(certificate verification is on; give a CA bundle for a private certificate authority)",
        )
    if isinstance(e, requests.exceptions.ReadTimeout):
        where = urlsplit(base_url).hostname
        return AnswerTimeout(f"{where} sent no answer within {timeout[1]:g} s (read timeout; --timeout "
                             "sets it)", context=ctx)
    if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                      requests.exceptions.ChunkedEncodingError)):
        return connection_error(e, base_url, timeout[0], ctx, redact)
    return SourceError(redact(f"request failed: {type(e).__name__}: {e}"), context=ctx)


def connection_error(e: Exception, base_url: str, connect_timeout: float, ctx: str,
                     redact: Callable[[str], str]) -> SourceError:
    """A connection failure in words: refused, DNS name not found, timed out, reset. A name
    the DNS says does not exist is terminal (retrying cannot help); the rest may pass."""
    parts = urlsplit(base_url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    cause = find_cause(e, (socket.gaierror, ConnectionRefusedError, ConnectionResetError, TimeoutError))
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return TransientSourceError(f"connecting to {where} timed out after {connect_timeout:g} s", context=ctx)
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
    return TransientSourceError(redact(f"connection to {where} failed: {innermost(e)}"), context=ctx)


def raise_for_status(resp: requests.Response, base_url: str, ctx: str, redact: Callable[[str], str]) -> None:
    """An answer with a status of 300 or more as the error it means (the response is closed)."""
    status = resp.status_code
    try:
        msg = redact(server_message(resp))
    finally:
        resp.close()
    if status == 429:
        raise RateLimitError(f"rate limited (HTTP 429): {msg}", context=ctx,
                             retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    if status in RETRY_STATUSES:
        cls = AnswerTimeout if status == 504 else TransientSourceError
        raise cls(f"HTTP {status}: {msg}", context=ctx, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    if status in (401, 403, 410):
        raise AuthError(f"the service refused the credentials (HTTP {status}): {msg}", context=ctx)
    if status in (404, 501) or (status == 400 and any(h in msg.lower() for h in NOT_FOUND_HINTS)):
        raise NotFoundError(f"not found (HTTP {status}): {msg}{base_url_hint(base_url, status)}", context=ctx)
    if 300 <= status < 400:
        raise SourceError(f"unexpected redirect (HTTP {status}) to {mask_url(resp.headers.get('Location', ''))}",
                          context=ctx)
    raise (ServerFailure if status >= 500 else SourceError)(f"the service answered HTTP {status}: {msg}", context=ctx)


def base_url_hint(base_url: str, status: int) -> str:
    """A 404 from a base URL that does not end with /rest/v3 is most likely that URL's fault."""
    parts = urlsplit(base_url)
    if status != 404 or parts.path.rstrip("/").endswith("/rest/v3"):
        return ""
    fixed = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/rest/v3", query="", fragment=""))
    return f" (the base URL has no /rest/v3: did you mean {mask_url(fixed)}?)"


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


def find_cause(e: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    return next((c for c in _chain(e) if isinstance(c, kinds)), None)


def innermost(e: BaseException) -> str:
    *_, last = _chain(e)
    return f"{type(last).__name__}: {last}"[:300]


def ssl_reason(e: Exception) -> str:
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
