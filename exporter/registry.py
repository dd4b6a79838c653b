"""Registry of sinks: a short lowercase key per destination, mapped to a lazily imported factory.

Built-in sinks and third-party plugins (entry point group ``exporter.sinks``) register the same
way. The key is the URL scheme (``postgres`` for ``postgresql+psycopg2://``); a bare path is the
files sink. A factory is called as ``factory(url, options) -> Sink`` and imports its driver only
then, so ``import exporter`` stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class SinkEntry:
    key: str
    target: str  # "package.module:factory"
    url_form: str
    description: str
    schemes: tuple[str, ...] = ()  # URL schemes (before any "+driver") this entry answers
    extra: str | None = None  # pip extra that brings its driver

    def factory(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:
            hint = f" (pip install 'exporter[{self.extra}]')" if self.extra else ""
            raise ConfigError(f"destination '{self.key}' needs a package that is not installed: {e.name}{hint}") from None


SINKS: dict[str, SinkEntry] = {}


def register(entry: SinkEntry) -> None:
    SINKS[entry.key] = entry


_BUILTINS = [
    SinkEntry("files", "connectors.files:create_sink", "./dir or file:///abs/dir",
              "a directory of files in the chosen formats, media alongside", ("file",)),
    SinkEntry("archive", "connectors.archive:create_sink", "archive:///path[.zip]",
              "a full account archive (manifest + JSON + media), replayable as a source", ("archive",)),
    SinkEntry("sqlite", "connectors.sql:create_sink", "sqlite:///path.db",
              "SQLite database (embedded default)", ("sqlite",)),
    SinkEntry("postgres", "connectors.sql:create_sink", "postgresql+psycopg2://user@host:5432/db",
              "PostgreSQL (COPY into staging, then merge)", ("postgresql", "postgres"), "postgres"),
    SinkEntry("mysql", "connectors.sql:create_sink", "mysql+pymysql://user@host:3306/db",
              "MariaDB / MySQL (`LOAD DATA LOCAL INFILE` streamed from memory; multi-row inserts to merge)",
              ("mysql", "mariadb"), "mysql"),
    SinkEntry("mssql", "connectors.sql:create_sink", "mssql+pyodbc://user@dsn",
              "Microsoft SQL Server (pyodbc fast_executemany)", ("mssql",), "mssql"),
    SinkEntry("access", "connectors.sql:create_sink", "access+pyodbc://@dsn",
              "Microsoft Access (sqlalchemy-access)", ("access",), "access"),
    SinkEntry("ftp", "connectors.remote:create_sink", "ftp://user@host:21/path",
              "FTP server", ("ftp",)),
    SinkEntry("ftps", "connectors.remote:create_sink", "ftps://user@host:21/path",
              "FTP with explicit TLS", ("ftps",)),
    SinkEntry("sftp", "connectors.remote:create_sink", "sftp://user@host:22/path",
              "SFTP server (host key checked against known_hosts)", ("sftp",), "sftp"),
    SinkEntry("dropbox", "connectors.remote:create_sink", "dropbox:///path",
              "Dropbox (upload sessions, content hash)", ("dropbox",), "dropbox"),
    SinkEntry("sharepoint", "connectors.remote:create_sink",
              "sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY/path",
              "SharePoint document library (upload sessions)", ("sharepoint",), "sharepoint"),
]

for _e in _BUILTINS:
    register(_e)


def _load_plugins() -> None:
    try:
        eps = metadata.entry_points(group="exporter.sinks")
    except Exception:  # noqa: BLE001 # pragma: no cover - broken environment
        return
    for ep in eps:
        if ep.name not in SINKS:
            register(SinkEntry(ep.name, ep.value, f"{ep.name}://...", f"plugin {ep.value}", (ep.name,)))


_load_plugins()


def scheme_of(url: str) -> str | None:
    head, sep, _ = url.partition("://")
    if not sep or "/" in head or "\\" in head or len(head) < 2:
        return None  # a plain path (C:\\ is a path, not a scheme)
    return head.split("+", 1)[0].lower()


def entry_for(url: str) -> SinkEntry:
    scheme = scheme_of(url)
    if scheme is None:
        return SINKS["files"]
    for entry in SINKS.values():
        if scheme in entry.schemes or scheme == entry.key:
            return entry
    known = sorted({s for e in SINKS.values() for s in e.schemes})
    raise ConfigError(f"unknown destination scheme '{scheme}://' (known: {', '.join(known)}, or a directory path)")


def create_sink(url: str, options: dict | None = None):
    entry = entry_for(url)
    return entry.factory()(url, dict(options or {}))
