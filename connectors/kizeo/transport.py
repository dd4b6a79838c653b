"""The HTTP pieces under ``KizeoClient``: a TLS 1.2-or-later adapter and the raw-token auth."""
from __future__ import annotations

import ssl
from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context


class TLSAdapter(HTTPAdapter):
    """An HTTPAdapter whose SSL context refuses anything older than TLS 1.2."""

    def __init__(self, *args: Any, verify: bool = True, **kwargs: Any):
        ctx = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2,
                                     cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not verify:  # only when explicitly asked (verify=False); logged as a warning
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        proxy_kwargs.setdefault("ssl_context", self.ssl_context)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class HeaderAuth(requests.auth.AuthBase):
    """Sets the raw token (no ``Bearer``) on one request; ``None`` sends no Authorization."""

    def __init__(self, token: str | None):
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token is not None:
            r.headers["Authorization"] = self._token
        else:
            r.headers.pop("Authorization", None)
        return r

    def __repr__(self) -> str:
        return "HeaderAuth(***)"
