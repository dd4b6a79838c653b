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


_URL_PW = re.compile(r"(?P<pre>[a-zA-Z][\w+.-]*://[^/\s:@]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def mask_url(text: str) -> str:
    """Hide the password part of any ``scheme://user:password@host`` in ``text``."""
    return _URL_PW.sub(lambda m: m["pre"] + MASK + m["at"], text)


@overload
def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: Literal[True] = True) -> str: ...


@overload
def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: bool) -> str | None: ...


def read_secret(*, env: str | None = None, file: str | os.PathLike | None = None, what: str = "secret",
                required: bool = True) -> str | None:
    """Read a secret from the environment variable ``env`` or the file ``file`` (first line,
    surrounding white space stripped)."""
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
