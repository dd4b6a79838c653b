"""Remote destinations: FTP/FTPS, SFTP, Dropbox, SharePoint, S3, Azure Blob Storage.

Every remote implements the small interface of ``connectors.remote.base`` and is driven by one
generic ``RemoteSink`` (``connectors.remote.sink``): the files sink writes the chosen formats and the
media into a local staging folder, and what it publishes is uploaded (``.partial`` + rename,
identical files skipped, retries with backoff). ``create_sink(url, options)`` picks the remote from
the URL scheme and imports its driver only then. ``create_remote`` also takes a local folder (a
plain path or ``file:///abs/path``), for what stores whole files anywhere (the backups).
"""
from __future__ import annotations

import importlib

from exporter.errors import ConfigError
from exporter.registry import missing_driver, scheme_of

#: URL scheme -> "module:factory" building the remote as ``factory(url, options)``
REMOTES: dict[str, str] = {
    "ftp": "exporter.connectors.remote.ftp_remote:create_remote",
    "ftps": "exporter.connectors.remote.ftp_remote:create_remote",
    "sftp": "exporter.connectors.remote.sftp_remote:create_remote",
    "dropbox": "exporter.connectors.remote.dropbox_remote:create_remote",
    "sharepoint": "exporter.connectors.remote.sharepoint_remote:create_remote",
    "s3": "exporter.connectors.remote.s3_remote:create_remote",
    "azure": "exporter.connectors.remote.azure_remote:create_remote",
    # a local folder: for backups (an export to a folder is the files destination)
    "file": "exporter.connectors.remote.local_remote:create_remote",
}

def create_remote(url: str, options: dict | None = None):
    scheme = scheme_of(url)
    if scheme is None and url and ":" not in url.partition("/")[0]:
        scheme, url = "file", url  # a plain path: a local folder
    target = REMOTES.get(scheme or "")
    if target is None:
        raise ConfigError(f"not a remote URL: {url!r} (known: {', '.join(f'{s}://' for s in REMOTES)})")
    module, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ConfigError(f"{scheme}:// is not available in this version") from None
        raise missing_driver(scheme, e.name or "?") from None
    return factory(url, dict(options or {}))


def create_sink(url: str, options: dict | None = None):
    """The registry's factory for every remote scheme: a ``RemoteSink`` over the remote."""
    from .sink import RemoteSink

    options = dict(options or {})
    return RemoteSink(create_remote(url, options), options)


__all__ = ["REMOTES", "create_remote", "create_sink"]
