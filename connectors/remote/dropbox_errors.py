"""Dropbox SDK errors as ours: Stone error unions flattened to their tags, and each SDK or
transport exception translated where it enters the exporter (terminal ``SinkError`` or retryable
``TransientSinkError``, with a readable reason: out of space, refused token, bad path...)."""
from __future__ import annotations

from typing import Any

from exporter.errors import SinkError, TransientSinkError

from .common import translate_transport_error


def union_tags(err: Any, depth: int = 0) -> list[str]:
    """Flatten a Stone error union (``path -> reason -> insufficient_space``) into its tags."""
    tags: list[str] = []
    if err is None or depth > 6:
        return tags
    tag = getattr(err, "_tag", None)
    if tag is not None:
        tags.append(tag)
        tags.extend(union_tags(getattr(err, "_value", None), depth + 1))
    else:  # a struct (UploadWriteFailed: reason + session id)
        reason = getattr(err, "reason", None) if hasattr(type(err), "reason") else None
        tags.extend(union_tags(reason, depth + 1))
    return tags


def translate_error(exc: BaseException, where: str, what: str) -> BaseException:
    """An exception of the Dropbox SDK (or of the transport under it) as ours: terminal
    ``SinkError`` or retryable ``TransientSinkError``, naming ``where`` and what we were trying to
    do; anything else is returned as it is."""
    from dropbox import exceptions as dx
    from dropbox.stone_validators import ValidationError

    if isinstance(exc, dx.AuthError):
        tag = getattr(exc.error, "_tag", None) or "invalid token"
        return SinkError(f"Dropbox refused the token ({tag}) while trying to {what}", context=where)
    if isinstance(exc, dx.RateLimitError):
        return TransientSinkError(f"Dropbox asks to slow down (too_many_requests) while trying to {what}",
                                  context=where, retry_after=exc.backoff)
    if isinstance(exc, dx.InternalServerError):
        return TransientSinkError(f"Dropbox server error {exc.status_code} while trying to {what}", context=where)
    if isinstance(exc, dx.BadInputError):
        return SinkError(f"Dropbox refused the request to {what}: {exc.message}", context=where)
    if isinstance(exc, dx.ApiError):
        tags = union_tags(exc.error)
        summary = "/".join(tags) or str(exc.error)
        if any(t in tags for t in ("insufficient_space", "insufficient_quota", "team_folder_insufficient_space",
                                    "member_folder_insufficient_space", "team_folder_insufficient_quota",
                                    "member_folder_insufficient_quota")):
            return SinkError(f"the Dropbox account is out of space (quota exceeded) while trying to {what}", context=where)
        if "too_many_write_operations" in tags or "too_many_requests" in tags:
            return TransientSinkError(f"Dropbox is busy ({summary}) while trying to {what}", context=where, retry_after=1.0)
        if "upload_traffic_limit_reached" in tags:
            return SinkError(f"the Dropbox upload traffic limit is reached while trying to {what}", context=where)
        if "malformed_path" in tags or "disallowed_name" in tags:
            return SinkError(f"Dropbox refused the path ({summary}) while trying to {what}", context=where)
        if "no_write_permission" in tags or "access_restricted" in tags or "team_folder" in tags:
            return SinkError(f"no permission to write there ({summary}) while trying to {what}", context=where)
        if "content_hash_mismatch" in tags:
            return TransientSinkError(f"data corrupted in transit ({summary}) while trying to {what}", context=where)
        return SinkError(f"Dropbox refused to {what} ({summary})", context=where)
    if isinstance(exc, ValidationError):
        return SinkError(f"Dropbox SDK refused the argument to {what}: {exc}", context=where)
    transport = translate_transport_error(exc, "Dropbox", what, where)
    if transport is not None:
        return transport
    if isinstance(exc, dx.HttpError):
        if exc.status_code >= 500 or exc.status_code == 408:
            return TransientSinkError(f"Dropbox HTTP {exc.status_code} while trying to {what}", context=where)
        return SinkError(f"Dropbox HTTP {exc.status_code} while trying to {what}: {str(exc.body)[:200]}", context=where)
    return exc
