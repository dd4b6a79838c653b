"""SQL databases as export destinations, through SQLAlchemy 2.

URL forms: ``sqlite:///path.db``, ``postgresql+psycopg://user@host:5432/db``,
``mysql+pymysql://user@host:3306/db`` (or ``mariadb+pymysql://``), ``mssql+pyodbc://user@dsn``,
``access+pyodbc://@dsn``, ``postgresql+pyodbc://user@host:5432/db?driver=PostgreSQL+Unicode``
(psqlODBC; the SQLAlchemy dialect lives in :mod:`.pg_pyodbc`). What differs between databases is in
one module per dialect (:mod:`.dialects`), chosen from the URL's backend name. The
password never goes in the URL on a command line: options ``password_env`` (name of an
environment variable), ``password_file`` (a file holding it), or ``url_env`` (an environment
variable holding the whole URL). Passwords are masked in ``name`` and
in every message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.errors import ConfigError
from exporter.secrets import register_secret

if TYPE_CHECKING:
    import sqlalchemy

    from .sink import SqlSink


def _read_secret(options: dict) -> str | None:
    """The password named by ``password_env`` or ``password_file``, registered for masking. Read
    as written (an empty password, spaces at either end and all), unlike the other secrets."""
    env = options.get("password_env")
    value = None
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"environment variable {env} (database password) is not set")
    elif options.get("password_file"):
        path = options["password_file"]
        try:
            value = Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read the database password file {path}: {e.strerror or e}") from None
    register_secret(value)
    return value


def parse_url(url: str | None, options: dict) -> sqlalchemy.engine.URL:
    """The SQLAlchemy URL of ``url``/``options``, with its driver defaulted and password set."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError

    from .dialects import for_url

    if options.get("url_env"):
        env = options["url_env"]
        url = os.environ.get(env)
        if not url:
            raise ConfigError(f"environment variable {env} (database URL) is not set")
    if not url:
        raise ConfigError("no database URL given")
    try:
        u = sa.engine.make_url(url)
    except ArgumentError:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        raise ConfigError(f"not a database URL (scheme {scheme}://)") from None
    try:
        u = for_url(u).url(u)
    except ValueError:  # no dialect module: SQLAlchemy's own dialect, if it has one, as given
        pass
    secret = _read_secret(options)
    if secret is not None:
        u = u.set(password=secret)
    return u


def create_sink(url: str, options: dict | None = None) -> SqlSink:
    """Registry factory: ``create_sink(url, options) -> SqlSink``."""
    from sqlalchemy.exc import NoSuchModuleError

    from .sink import SqlSink

    options = dict(options or {})
    u = parse_url(url, options)
    try:
        # load the URL's driver now: a missing one is one line naming its pip extra (the
        # registry's message), before anything is created, not a traceback when connecting
        u.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(f"unsupported database driver {u.drivername}://") from None
    try:
        return SqlSink(u, options)
    except ValueError as e:
        raise ConfigError(f"unsupported database: {e}") from None


__all__ = ["create_sink", "parse_url"]
