"""Kizeo Forms REST v3: the HTTP client and the web-service source.

    from exporter.connectors.kizeo import KizeoClient, EnvToken, WebSource
    client = KizeoClient(EnvToken("KIZEO_TOKEN"))
    source = WebSource(client, mode="cursor")

The fake service for tests and demonstrations is ``exporter.testing.fake_server``.
"""
from .client import DEFAULT_BASE_URL, KizeoClient
from .http_errors import mask_url
from .source import WebSource, build_web_source
from .tokens import EnvToken, FileToken, LoginToken, StaticToken, TokenProvider

__all__ = [
    "DEFAULT_BASE_URL", "EnvToken", "FileToken", "KizeoClient", "LoginToken", "StaticToken",
    "TokenProvider", "WebSource", "build_web_source", "mask_url",
]
