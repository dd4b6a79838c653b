"""Alerts: one JSON POST to a webhook per run that asks for it (a failure; a success when asked).

The body carries ``text`` (what Slack and Teams incoming webhooks show) and the run's fields
(account, action, result, start, end, error). A webhook that does not answer, or answers an
error, is retried a few times (``retry.retry_call``), then given up: ``send`` returns the reason
in one line, for the caller to log. An alert never changes the result of the run it reports.
"""
from __future__ import annotations

import logging

from .errors import ExporterError
from .retry import retry_call
from .secrets import mask

log = logging.getLogger("exporter.alerts")


class AlertError(ExporterError):
    transient = True


def message(record: dict) -> dict:
    """The JSON body for an audit ``record``."""
    result = record.get("result", "?")
    text = f"exporter: {record.get('action', 'run')} of account {record.get('account')} {result}"
    if record.get("error"):
        text += f": {record['error']}"
    fields = {k: record.get(k) for k in ("account", "action", "result", "start", "end", "seconds", "error", "host")}
    return {"text": mask(text), **{k: mask(v) if isinstance(v, str) else v for k, v in fields.items()}}


def send(url: str, record: dict, *, timeout: float = 10.0, attempts: int = 3, base_delay: float = 0.5) -> str | None:
    """POST ``message(record)`` to ``url``; None when it was taken (2xx), else why not."""
    import requests

    body = message(record)

    def post() -> None:
        try:
            r = requests.post(url, json=body, timeout=timeout)
        except requests.RequestException as e:
            raise AlertError(f"{type(e).__name__}") from None
        if r.status_code >= 500 or r.status_code == 429:
            raise AlertError(f"HTTP {r.status_code}")
        if r.status_code >= 300:
            refused = AlertError(f"HTTP {r.status_code}")
            refused.transient = False  # a 3xx/4xx answer will not change: not retried
            raise refused

    try:
        retry_call(post, attempts=attempts, base_delay=base_delay, max_delay=5.0, describe="alert webhook")
    except AlertError as e:
        return f"the alert webhook {mask_url_path(url)} refused or did not answer: {e}"
    return None


def mask_url_path(url: str) -> str:
    """A webhook URL is itself a secret (its path is the key): only its scheme and host are shown."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/***"
    except ValueError:
        return "***"
