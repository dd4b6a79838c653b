"""Kizeo Forms REST v3: the HTTP client and the web-service source.

    from exporter.connectors.kizeo import KizeoClient, EnvToken, WebSource
    client = KizeoClient(EnvToken("KIZEO_TOKEN"))
    source = WebSource(client, mode="cursor")

The fake service for tests and demonstrations is ``exporter.testing.fake_server``.
"""
from exporter.secrets import mask_url  # the one rule for URLs, here for those who imported it from here

from .client import DEFAULT_BASE_URL, KizeoClient
from .source import WebSource, build_web_source
from .tokens import EnvToken, FileToken, LoginToken, StaticToken, TokenProvider

__all__ = [
    "DEFAULT_BASE_URL", "EnvToken", "FileToken", "KizeoClient", "LoginToken", "StaticToken",
    "TokenProvider", "WebSource", "build_web_source", "mask_url",
]
