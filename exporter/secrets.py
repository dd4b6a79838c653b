"""Secrets come from environment variables or files, never from the command line, and never
reach a log, a repr or an error message: every value read here is registered and masked."""
from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Literal, overload

from .errors import ConfigError

_known: set[str] = set()
_lock = threading.Lock()
MASK = "***"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def mask(text: str) -> str:
    if not text:
        return text
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for v in values:
        text = text.replace(v, MASK)
    return mask_url(text)


_URL = re.compile(r"[a-zA-Z][\w+.-]*://\S+")
# the password runs to the authority's last "@" (a password may hold one; "/?#" end the authority)
_URL_PW = re.compile(r"^(?P<pre>[a-zA-Z][\w+.-]*://[^/?#\s:@]*:)(?P<pw>[^/?#\s]+)(?P<at>@)")
#: a query (or fragment: ``#access_token=``) parameter; its value runs to the next separator or
#: space (a quote inside a secret value is masked with it, a closing quote after it too)
_QUERY_PARAM = re.compile(r"(?P<pre>[?&;#](?P<name>[^=&;#\s]+)=)(?P<value>[^&;#\s]+)")
#: a query parameter whose name says it holds a secret: ``token``, ``access_token``, ``password``,
#: ``api_key``, Azure SAS ``sig``, S3's ``X-Amz-Signature`` and ``X-Amz-Credential``...
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|sig|credential|auth|session", re.I)


def mask_url(text: str) -> str:
    """The one rule for URLs (log lines, messages, reprs, descriptions): in every
    ``scheme://...`` URL of ``text``, the password of ``user:password@host`` and the value of
    each query parameter whose name says it is a secret become ``***``; the rest (user, host,
    path, other parameters such as ``?csv_bom=true``) stays readable."""
    return _URL.sub(lambda m: _mask_one_url(m[0]), text)


def _mask_one_url(url: str) -> str:
    url = _URL_PW.sub(lambda m: m["pre"] + MASK + m["at"], url, count=1)
    return _QUERY_PARAM.sub(lambda m: m["pre"] + MASK if _SECRET_PARAM.search(m["name"]) else m[0], url)


@overload
def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: Literal[True] = True, register: bool = True) -> str: ...


@overload
def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: bool, register: bool = True) -> str | None: ...


def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: bool = True, register: bool = True) -> str | None:
    """Read a secret from the environment variable ``env`` or the file ``file`` (first line,
    surrounding white space stripped), masked from then on in everything this process writes
    (``register=False``: a value read by reference that is not secret, such as a user name)."""
    value: str | None = None
    if env:
        value = os.environ.get(env)
        if value is None and required and not file:
            raise ConfigError(f"environment variable {env} (the {what}) is not set")
    if value is None and file:
        p = Path(file).expanduser()
        try:
            value = p.read_text("utf-8").strip().splitlines()[0].strip() if p.stat().st_size else ""
        except FileNotFoundError:
            raise ConfigError(f"{what} file {p} does not exist") from None
        except PermissionError:
            raise ConfigError(f"{what} file {p} is not readable") from None
        except IndexError:
            value = ""
    if value is not None:
        value = value.strip()
        if not value and required:
            raise ConfigError(f"the {what} is empty ({'$' + env if env else file})")
        if register:
            register_secret(value)
    elif required:
        raise ConfigError(f"no {what} given: use an environment variable or a file")
    return value


class SecretFilter(logging.Filter):
    """Masks every registered secret in log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        masked = mask(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True
