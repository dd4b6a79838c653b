"""Remote destinations: FTP/FTPS, SFTP, Dropbox, SharePoint, S3, Azure Blob Storage.

Every remote implements the small interface of ``connectors.remote.base`` and is driven by one
generic ``RemoteSink`` (``connectors.remote.sink``): the files sink writes the chosen formats and the
media into a local staging folder, and what it publishes is uploaded (``.partial`` + rename,
identical files skipped, retries with backoff). The remotes are registered like every plugin
(entry point group ``exporter.remotes``, declarations in ``connectors.remote.catalog``);
``create_remote(url, options)`` picks one from the URL scheme and imports its SDK only then. It
also takes a local folder (a plain path or ``file:///abs/path``), for what stores whole files
anywhere (the backups).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from exporter import registry

if TYPE_CHECKING:
    from .base import Remote
    from .sink import RemoteSink


def create_remote(url: str, options: dict | None = None) -> Remote:
    """The remote at ``url``, its options checked and typed (unknown keys refused)."""
    return registry.create_remote(url, options)


def create_sink(url: str, options: dict | None = None) -> RemoteSink:
    """The destination factory of every remote: a ``RemoteSink`` over the remote, which reads the
    options it declares; the sink and the files it stages read the others."""
    from .sink import RemoteSink

    options = dict(options or {})
    return RemoteSink(registry.create_remote(url, options, strict=False), options)


__all__ = ["create_remote", "create_sink"]
