"""Alerts: a JSON POST to a webhook and/or an email, per run that asks for it (a failure; a
success when asked); ``notify`` sends what the account's ``alerts`` table names.

The webhook's body carries ``text`` (what Slack and Teams incoming webhooks show) and the run's
fields (account, action, result, start, end, error). The email goes over SMTP with TLS: STARTTLS
(refused if the server does not offer it: never in clear) or implicit TLS (port 465), the
server's certificate verified (the system's CAs, or the ``ca_file`` of a private CA), TLS 1.2 at
least, AUTH with the user and password read by reference; its subject names the account, the
action and the result, its body is the audit record (masked). A receiver that does not answer,
or answers a temporary error, is retried a few times (``retry.retry_call``), then given up: each
failure is returned as one line, for the caller to log. An alert never changes the result of the
run it reports.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, ExporterError, one_line
from .retry import retry_call
from .secrets import mask, read_secret

if TYPE_CHECKING:
    from .jobalerts import Alerts, Email

log = logging.getLogger("exporter.alerts")
SMTP_TIMEOUT = 15.0  # seconds a connection or an answer may take (each of the attempts)


class AlertError(ExporterError):
    transient = True


def notify(alerts: Alerts, record: dict, base_dir: Path) -> list[str]:
    """Send the webhook and the email ``alerts`` names for the audit ``record`` (relative
    ``*_file`` paths start at ``base_dir``); what failed, one line each (each is tried whatever
    the other did)."""
    problems = []
    if alerts.webhook_env or alerts.webhook_file:
        try:
            url = read_secret(env=alerts.webhook_env, file=_path(base_dir, alerts.webhook_file),
                              what="alert webhook URL")
            problems.append(send(url, record))
        except ConfigError as e:
            problems.append(f"the alert webhook was not sent: {mask(one_line(e))}")
    if alerts.email is not None:
        problems.append(send_email(alerts.email, record, base_dir))
    return [p for p in problems if p]


def _path(base_dir: Path, name: str | None) -> Path | None:
    return base_dir / os.path.expanduser(name) if name else None


def summary(record: dict) -> str:
    """``exporter: ACTION of account NAME RESULT``: the first words of every alert."""
    return mask(f"exporter: {record.get('action', 'run')} of account {record.get('account')} "
                f"{record.get('result', '?')}")


# ---- the webhook ---------------------------------------------------------------------------------

def message(record: dict) -> dict:
    """The JSON body for an audit ``record``."""
    text = summary(record)
    if record.get("error"):
        text += f": {mask(record['error'])}"
    fields = {k: record.get(k) for k in ("account", "action", "result", "start", "end", "seconds", "error", "host")}
    return {"text": text, **{k: mask(v) if isinstance(v, str) else v for k, v in fields.items()}}


#: a requests exception class, in words
_REQUEST_FAILURES = {"ConnectionError": "connection failed (refused, reset, or the name not found)",
                     "ConnectTimeout": "connection timed out", "ReadTimeout": "no answer in time",
                     "SSLError": "TLS failed", "TooManyRedirects": "too many redirects"}


def send(url: str, record: dict, *, timeout: float = 10.0, attempts: int = 3, base_delay: float = 0.5) -> str | None:
    """POST ``message(record)`` to ``url``; None when it was taken (2xx), else why not."""
    import requests

    body = message(record)

    def post() -> None:
        try:
            r = requests.post(url, json=body, timeout=timeout)
        except requests.RequestException as e:
            # the class, in words, not requests' text: that would show the URL, whose path is a secret
            raise AlertError(_REQUEST_FAILURES.get(type(e).__name__, type(e).__name__)) from None
        if r.status_code >= 500 or r.status_code == 429:
            raise AlertError(f"HTTP {r.status_code}")
        if r.status_code >= 300:
            raise _terminal(f"HTTP {r.status_code}")  # a 3xx/4xx answer will not change: not retried

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


def _terminal(text: str) -> AlertError:
    e = AlertError(text)
    e.transient = False
    return e


# ---- the email -----------------------------------------------------------------------------------

def mail(email: Email, record: dict) -> EmailMessage:
    """The alert email for an audit ``record``: the summary as subject, the record as body."""
    from .audit import masked

    msg = EmailMessage()
    msg["Subject"] = summary(record)
    msg["From"] = email.sender
    msg["To"] = ", ".join(email.to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("exporter", domain=parseaddr(email.sender)[1].rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-reply to it
    text = summary(record) + (f": {mask(record['error'])}" if record.get("error") else "")
    msg.set_content(f"{text}\n\nThe audit record of this run:\n\n"
                    f"{json.dumps(masked(record), indent=2, ensure_ascii=False, default=str)}\n")
    return msg


def tls_context(ca_file: str | os.PathLike | None) -> ssl.SSLContext:
    """Certificates verified (against ``ca_file`` when given, else the system's CAs), host name
    checked, TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send_email(email: Email, record: dict, base_dir: Path, *, timeout: float = SMTP_TIMEOUT, attempts: int = 3,
               base_delay: float = 0.5) -> str | None:
    """Send ``mail(email, record)``; None when the server took it, else why not (one line)."""
    where = f"the alert email to {', '.join(email.to)} via {email.server}"
    try:
        user, password = email.user, None
        if email.user_env or email.user_file:
            user = read_secret(env=email.user_env, file=_path(base_dir, email.user_file), what="SMTP user",
                               register=False)  # a name, not a secret: masking it would blank it everywhere
        if email.password_env or email.password_file:
            password = read_secret(env=email.password_env, file=_path(base_dir, email.password_file),
                                   what="SMTP password")
        context = tls_context(_path(base_dir, email.ca_file))
    except (ConfigError, OSError) as e:  # ssl.SSLError is an OSError
        return f"{where} was not sent: {mask(one_line(e))}"
    msg = mail(email, record)  # after the secrets were read: they are masked in it
    sender, recipients = parseaddr(email.sender)[1], [parseaddr(a)[1] for a in email.to]

    def deliver() -> None:
        try:
            smtp = (smtplib.SMTP_SSL(email.host, email.port, timeout=timeout, context=context)
                    if email.tls == "implicit" else smtplib.SMTP(email.host, email.port, timeout=timeout))
            with smtp:
                if email.tls != "implicit":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise _terminal("the server does not offer STARTTLS (the alert is never sent in clear)")
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if user and password:
                    smtp.login(user, password)
                smtp.send_message(msg, sender, recipients)
        except (smtplib.SMTPException, OSError) as e:
            raise _translated(e) from None

    try:
        retry_call(deliver, attempts=attempts, base_delay=base_delay, max_delay=5.0, describe="alert email")
    except AlertError as e:
        return f"{where} failed: {mask(' '.join(str(e).split()))}"
    return None


def _translated(e: smtplib.SMTPException | OSError) -> AlertError:
    """An SMTP or TLS error as an AlertError: transient when temporary (a 4xx answer, a connection
    refused, reset or timed out), terminal otherwise (a certificate not trusted, AUTH refused, a
    5xx answer)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return _terminal(f"the server's certificate is not trusted ({e.verify_message}); for a private CA give "
                         "ca_file")
    if isinstance(e, ssl.SSLError):
        return _terminal(f"TLS failed ({e.reason or e})")
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return _terminal(f"the server refused the user and password ({_answer(e.smtp_code, e.smtp_error)})")
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{who}: {_answer(*why)}" for who, why in e.recipients.items())
        return _terminal(f"the server refused the recipients ({refused})")
    if isinstance(e, smtplib.SMTPResponseException):
        error = AlertError(f"the server answered {_answer(e.smtp_code, e.smtp_error)}")
        error.transient = 400 <= e.smtp_code < 500
        return error
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return _terminal(f"the server does not support it: {e}")
    if isinstance(e, OSError) and e.strerror:  # refused, reset, a name not found: the reason in words
        return AlertError(" ".join(e.strerror.lower().split()))
    if isinstance(e, TimeoutError):
        return AlertError("timed out")
    return AlertError(one_line(e))  # disconnected


def _answer(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(words.split())}"
