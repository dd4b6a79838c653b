"""SharePoint errors as ours: each exception of office365-rest-python-client (or of the
transport under it) translated where it enters the exporter, by HTTP status (404: ``NotFound``;
401/403: a refused token; 507 or a quota code: out of storage; 408/423/429/5xx: retryable)."""
from __future__ import annotations

from exporter.errors import SinkError, TransientSinkError
from exporter.retry import parse_retry_after

from .common import translate_transport_error

#: statuses worth another attempt (423: the file is locked, e.g. being checked in)
TRANSIENT_STATUS = {408, 423, 429, 500, 502, 503, 504}


class NotFound(Exception):
    """HTTP 404 for a path: the caller decides whether that is an answer (stat) or an error."""


def translate_error(exc: BaseException, site_url: str, path: str, what: str) -> BaseException:
    """An exception of office365-rest-python-client (or of the transport under it) as ours:
    ``NotFound`` for HTTP 404 (callers decide what a missing path means), terminal ``SinkError``
    or retryable ``TransientSinkError`` (``Retry-After`` honoured) naming the site, the path and
    what we were trying to do; anything else is returned as it is."""
    from office365.runtime.client_request_exception import ClientRequestException

    where = f"{site_url} {path}"
    if isinstance(exc, ClientRequestException) and (resp := exc.response) is not None:
        status = resp.status_code
        text = ""
        try:
            text = str(exc.message or "")
        except Exception:  # noqa: BLE001 - a body the SDK cannot parse has no message
            text = ""
        detail = f" ({text[:200]})" if text else ""
        if status == 404:
            return NotFound(path)
        if status in (401, 403):
            return SinkError(f"SharePoint refused the token or the access (HTTP {status}) while trying to "
                             f"{what}{detail}", context=where)
        if status == 507 or "quota" in text.lower() or "SPQuotaExceeded" in str(getattr(exc, "code", "")):
            return SinkError(f"the SharePoint site is out of storage (quota exceeded) while trying to {what}",
                             context=where)
        if status in TRANSIENT_STATUS:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            return TransientSinkError(f"SharePoint answered HTTP {status} while trying to {what}{detail}",
                                      context=where, retry_after=retry_after)
        return SinkError(f"SharePoint refused to {what} (HTTP {status}){detail}", context=where)
    transport = translate_transport_error(exc, "SharePoint", what, where)
    if transport is not None:
        return transport
    if isinstance(exc, ClientRequestException):  # no response: a transport failure wrapped by the SDK
        return TransientSinkError(f"SharePoint request failed while trying to {what}: {exc}", context=where)
    return exc
