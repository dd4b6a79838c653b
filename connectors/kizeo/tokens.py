"""Where the API token comes from: an environment variable, a file, or the legacy ``POST /login``.

The token is secret: every provider registers it with ``exporter.secrets`` (so logs mask it) and
no repr shows it. ``KizeoClient`` asks ``token(client)`` before each request and calls
``invalidate(token)`` once when the service answers 401 (only ``LoginToken`` can renew).
"""
from __future__ import annotations

import abc
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.errors import ConfigError
from exporter.secrets import register_secret

if TYPE_CHECKING:
    from .client import KizeoClient

log = logging.getLogger("exporter.kizeo")


class TokenProvider:
    """Where the API token comes from. ``token(client)`` returns the current token;
    ``invalidate(token)`` is called once when the service answers 401 to it. Only a provider
    that can renew (``renewable``) gets a second chance."""

    renewable = False

    def token(self, client: KizeoClient) -> str:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} does not provide a token")

    def invalidate(self, token: str) -> None:
        """The service refused ``token``."""

    def secrets(self) -> tuple[str, ...]:
        """Secret values this provider knows (for redaction)."""
        return ()


class StaticToken(TokenProvider):
    """A token handed over by code (library use and tests). The CLI never builds one from an
    argument: it uses ``EnvToken`` or ``FileToken``."""

    def __init__(self, value: str):
        if not value or not value.strip():
            raise ConfigError("empty API token")
        self._value = value.strip()
        register_secret(self._value)

    def token(self, client: KizeoClient) -> str:
        return self._value

    def secrets(self) -> tuple[str, ...]:
        return (self._value,)

    def __repr__(self) -> str:
        return "StaticToken(***)"


class _ReadOnceToken(TokenProvider):
    """A token read once, at first use, by the subclass's ``_read()`` (which raises ConfigError
    when it is missing or empty), then registered as a secret and kept."""

    _value: str | None = None

    @abc.abstractmethod  # (for the type checker; no ABC at run time)
    def _read(self) -> str: ...

    def token(self, client: KizeoClient) -> str:
        if self._value is None:
            value = self._read()
            register_secret(value)
            self._value = value
        return self._value

    def secrets(self) -> tuple[str, ...]:
        return (self._value,) if self._value else ()


class EnvToken(_ReadOnceToken):
    """The token is the value of an environment variable (read at first use)."""

    def __init__(self, name: str = "KIZEO_TOKEN"):
        self.name = name
        self._value = None

    def _read(self) -> str:
        value = os.environ.get(self.name, "").strip()
        if not value:
            raise ConfigError(f"environment variable {self.name} is not set (it must hold the API token)")
        return value

    def __repr__(self) -> str:
        return f"EnvToken({self.name!r})"


class FileToken(_ReadOnceToken):
    """The token is the content of a file (surrounding whitespace removed)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._value = None

    def _read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the token file {self.path}: {e.strerror}") from None
        if not value:
            raise ConfigError(f"the token file {self.path} is empty")
        return value

    def __repr__(self) -> str:
        return f"FileToken({self.path!r})"


class LoginToken(TokenProvider):
    """Legacy ``POST /login`` with user, password and company read from environment variables.

    Such tokens were documented as valid about three days: the token is renewed proactively after
    ``renew_after`` seconds (two days by default) and once when the service answers 401.
    """

    renewable = True

    def __init__(self, user_env: str = "KIZEO_USER", password_env: str = "KIZEO_PASSWORD",
                 company_env: str = "KIZEO_COMPANY", *, renew_after: float = 2 * 24 * 3600,
                 clock: Callable[[], float] = time.monotonic):
        self.user_env, self.password_env, self.company_env = user_env, password_env, company_env
        self.renew_after = renew_after
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._obtained = 0.0
        self._old: list[str] = []
        self.logins = 0

    def _credentials(self) -> tuple[str, str, str]:
        values = []
        for name in (self.user_env, self.password_env, self.company_env):
            v = os.environ.get(name, "")
            if not v:
                raise ConfigError(f"environment variable {name} is not set (needed to log in)")
            values.append(v)
        register_secret(values[1])
        return values[0], values[1], values[2]

    def token(self, client: KizeoClient) -> str:
        with self._lock:
            if self._value is None or self._clock() - self._obtained >= self.renew_after:
                if self._value is not None:
                    log.info("renewing the login token for %s", client.description)
                    self._old.append(self._value)
                user, password, company = self._credentials()
                self._value = client.login(user, password, company)
                register_secret(self._value)
                self._obtained = self._clock()
                self.logins += 1
            return self._value

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._value == token:
                self._old.append(token)
                self._value = None

    def secrets(self) -> tuple[str, ...]:
        out = list(self._old)
        if self._value:
            out.append(self._value)
        pw = os.environ.get(self.password_env)
        if pw:
            out.append(pw)
        return tuple(out)

    def __repr__(self) -> str:
        return f"LoginToken(user_env={self.user_env!r}, company_env={self.company_env!r}, password=***)"
