"""Registry of sinks: a short lowercase key per destination, mapped to a lazily imported factory.

Built-in sinks and third-party plugins (entry point group ``exporter.sinks``) register the same
way. The key is the URL scheme (``postgres`` for ``postgresql+psycopg2://``); a bare path is the
files sink. A factory is called as ``factory(url, options) -> Sink`` and imports its driver only
then, so ``import exporter`` stays cheap.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
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
    modules: tuple[str, ...] = ()  # optional modules it always needs (an SQL driver is read from the URL)
    #: the option keys it reads (``-o KEY=VALUE``, ``?KEY=VALUE`` in its URL); None = undeclared (plugins)
    options: tuple[str, ...] | None = None
    formats: bool = False  # writes the file formats (--format) and reads their options
    url_query: bool = False  # other query parameters of its URL are its driver's (SQLAlchemy URLs)

    def factory(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:
            if e.name and e.name.split(".")[0] in DRIVER_EXTRAS:
                raise missing_driver(self.key, e.name, self.extra) from None
            hint = f" (pip install 'exporter[{self.extra}]')" if self.extra else ""
            raise ConfigError(f"destination '{self.key}' needs a package that is not installed: {e.name}{hint}") from None


#: top-level module of every optional driver or SDK -> the pip extras that bring it (pyproject.toml)
DRIVER_EXTRAS: dict[str, tuple[str, ...]] = {
    "psycopg2": ("postgres",),
    "pymysql": ("mysql",),
    "pyodbc": ("odbc", "mssql", "access"),
    "sqlalchemy_access": ("access",),
    "paramiko": ("sftp",),
    "dropbox": ("dropbox",),
    "office365": ("sharepoint",),
    "boto3": ("s3",),
    "botocore": ("s3",),
    "azure": ("azure",),
}


def missing_driver(key: str, module: str, extra: str | None = None) -> ConfigError:
    """The one message for a driver or SDK that is not installed: which destination needs which
    module, and the pip extra that brings it (the destination's own extra when it brings it)."""
    top = module.split(".")[0]
    extras = DRIVER_EXTRAS.get(top, ())
    pick = extra if extra in extras else (extras[0] if extras else None)
    hint = f": pip install 'exporter[{pick}]'" if pick else " (not installed)"
    return ConfigError(f"the {key} destination needs {top}{hint}")


SINKS: dict[str, SinkEntry] = {}


def register(entry: SinkEntry) -> None:
    SINKS[entry.key] = entry


#: option keys, declared once per kind of destination (what its factory and sink read)
_SQL = ("password_env", "password_file", "url_env", "schema", "media_in_db", "media_dir", "media_in_db_max_bytes",
        "max_columns", "rows_per_batch", "loader", "background_load")
_REMOTE = ("retries", "retry_base_delay", "retry_max_delay", "chunk_size", "staging_dir")
_SERVER = _REMOTE + ("password_env", "password_file", "timeout", "max_path_length", "max_name_length",
                     "forbidden_chars", "case_insensitive")
_FTP = _SERVER + ("ca_file", "passive")
_SFTP = _SERVER + ("key_file", "key_passphrase_env", "key_passphrase_file", "known_hosts", "trust_on_first_use")
_SDK = _REMOTE + ("token_env", "token_file", "simple_upload_limit", "attempts", "timeout")
_DROPBOX = _SDK + ("refresh_token_env", "refresh_token_file", "app_key", "app_key_env", "app_secret_env",
                   "app_secret_file", "api_host", "content_host", "ca_certs")
_OBJECT_STORE = _REMOTE + ("ca_bundle", "simple_upload_limit", "upload_concurrency", "timeout")
_S3 = _OBJECT_STORE + ("endpoint_url", "region", "path_style", "profile", "access_key_id_env", "access_key_id_file",
                       "secret_access_key_env", "secret_access_key_file", "session_token_env", "session_token_file")
_AZURE = _OBJECT_STORE + ("endpoint", "connection_string_env", "connection_string_file", "account_key_env",
                          "account_key_file", "sas_token_env", "sas_token_file")
_SHAREPOINT = _SDK + ("tenant", "client_id", "client_secret_env", "client_secret_file", "cert_path", "thumbprint",
                      "site_path", "ca_bundle")

_BUILTINS = [
    SinkEntry("files", "exporter.connectors.files:create_sink", "./dir or file:///abs/dir",
              "a directory of files in the chosen formats, media alongside", ("file",), options=("deltas",), formats=True),
    SinkEntry("archive", "exporter.connectors.archive.sink:create_sink", "archive:///path[.zip]",
              "a full account archive (manifest + JSON + media), replayable as a source", ("archive",),
              options=("zip",)),
    SinkEntry("sqlite", "exporter.connectors.sql:create_sink", "sqlite:///path.db",
              "SQLite database (embedded default)", ("sqlite",), options=_SQL, url_query=True),
    SinkEntry("postgres", "exporter.connectors.sql:create_sink", "postgresql+psycopg2://user@host:5432/db",
              "PostgreSQL (COPY into staging, then merge)", ("postgresql", "postgres"), "postgres",
              options=_SQL, url_query=True),
    SinkEntry("mysql", "exporter.connectors.sql:create_sink", "mysql+pymysql://user@host:3306/db",
              "MariaDB / MySQL (multi-row INSERT, merged with ON DUPLICATE KEY UPDATE)",
              ("mysql", "mariadb"), "mysql", options=_SQL, url_query=True),
    SinkEntry("mssql", "exporter.connectors.sql:create_sink", "mssql+pyodbc://user@dsn",
              "Microsoft SQL Server (pyodbc fast_executemany)", ("mssql",), "mssql", options=_SQL, url_query=True),
    SinkEntry("access", "exporter.connectors.sql:create_sink", "access+pyodbc://@dsn",
              "Microsoft Access (sqlalchemy-access)", ("access",), "access", ("sqlalchemy_access",),
              options=_SQL, url_query=True),
    SinkEntry("ftp", "exporter.connectors.remote:create_sink", "ftp://user@host:21/path",
              "FTP server", ("ftp",), options=_FTP, formats=True),
    SinkEntry("ftps", "exporter.connectors.remote:create_sink", "ftps://user@host:21/path",
              "FTP with explicit TLS", ("ftps",), options=_FTP, formats=True),
    SinkEntry("sftp", "exporter.connectors.remote:create_sink", "sftp://user@host:22/path",
              "SFTP server (host key checked against known_hosts)", ("sftp",), "sftp", ("paramiko",),
              options=_SFTP, formats=True),
    SinkEntry("dropbox", "exporter.connectors.remote:create_sink", "dropbox:///path",
              "Dropbox (upload sessions, content hash)", ("dropbox",), "dropbox", ("dropbox",),
              options=_DROPBOX, formats=True),
    SinkEntry("sharepoint", "exporter.connectors.remote:create_sink",
              "sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY/path",
              "SharePoint document library (upload sessions)", ("sharepoint",), "sharepoint", ("office365",),
              options=_SHAREPOINT, formats=True),
    SinkEntry("s3", "exporter.connectors.remote:create_sink", "s3://bucket/prefix",
              "Amazon S3 or S3-compatible object storage (multipart uploads, sha256 kept with each object)",
              ("s3",), "s3", ("boto3",), options=_S3, formats=True),
    SinkEntry("azure", "exporter.connectors.remote:create_sink", "azure://account/container/prefix",
              "Azure Blob Storage (block uploads, sha256 kept with each blob)", ("azure",), "azure",
              options=_AZURE, formats=True),
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


_SCHEME_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def entry_for(url: str) -> SinkEntry:
    scheme = scheme_of(url)
    if scheme is None:
        m = _SCHEME_LIKE.match(url)
        if m and not os.path.lexists(url):
            # "sqlite:/tmp/x.db" is a typo for a URL, not a folder to create named "sqlite:"
            head = m.group(1).split("+", 1)[0].lower()
            near = next((e for e in SINKS.values() if head in e.schemes or head == e.key), None)
            hint = f"did you mean {near.url_form}? " if near else ""
            known = sorted({s for e in SINKS.values() for s in e.schemes})
            raise ConfigError(f"{url!r} is not a destination URL (a URL needs '://') nor an existing path: {hint}"
                              f"known schemes: {', '.join(s + '://' for s in known)}"
                              + ("" if "/" in url else f"; a new folder with a colon in its name: ./{url}"))
        return SINKS["files"]
    for entry in SINKS.values():
        if scheme in entry.schemes or scheme == entry.key:
            return entry
    known = sorted({s for e in SINKS.values() for s in e.schemes})
    raise ConfigError(f"unknown destination scheme '{scheme}://' (known: {', '.join(known)}, or a directory path)")


def create_sink(url: str, options: dict | None = None):
    """The sink for ``url``. A driver or SDK that is not installed is one ConfigError naming the
    pip extra, raised here, before anything is created (SQL factories load their URL's driver)."""
    from .validate import split_url_options

    url, url_options = split_url_options(url)
    options = {**(options or {}), **url_options}
    entry = entry_for(url)
    for module in entry.modules:
        if importlib.util.find_spec(module) is None:
            raise missing_driver(entry.key, module, entry.extra)
    try:
        return entry.factory()(url, dict(options or {}))
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in DRIVER_EXTRAS:
            raise missing_driver(entry.key, e.name, entry.extra) from None
        raise
