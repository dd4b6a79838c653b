"""The ``alerts`` table of a jobs file's account, checked: a webhook and/or an email, and when
they are sent (``exporter.alerts`` sends them). Problems are recorded against their keys by the
jobs file's ``Checker`` (``exporter.jobtables``), like every other table's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .jobtables import Checker

ALERT_ON = ("failure", "success")
ALERT_KEYS = {"webhook_env", "webhook_file", "email", "on"}
EMAIL_KEYS = {"to", "from", "smtp", "tls", "user", "user_env", "user_file", "password_env", "password_file", "ca_file"}
EMAIL_TLS = ("starttls", "implicit")


@dataclass(frozen=True)
class Email:
    """An alert email: sent over SMTP with TLS (STARTTLS, or implicit TLS), the server's
    certificate verified against the system's CAs or ``ca_file``."""

    key: tuple
    to: tuple[str, ...]
    sender: str  # the table's ``from``
    host: str
    port: int
    tls: str = "starttls"  # or "implicit"
    user: str | None = None
    user_env: str | None = None
    user_file: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    ca_file: str | None = None

    @property
    def server(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Alerts:
    key: tuple
    webhook_env: str | None = None
    webhook_file: str | None = None
    email: Email | None = None
    on: tuple[str, ...] = ("failure",)
    #: (key path, variable) of every ``*_env`` the alerts read (never given to an export's process)
    env_refs: tuple[tuple[tuple, str], ...] = ()


def alerts(c: Checker, value: Any, key: tuple, files: list) -> Alerts | None:
    """The ``alerts`` table: a webhook and/or an email, and when they are sent."""
    table = c.table(key, value)
    if table is None:
        return None
    c.unknown(table, key, ALERT_KEYS, " (alerts are a webhook, a JSON POST, Slack/Teams compatible, and/or an email)")
    env: list = []
    c.references({k: v for k, v in table.items() if k in ALERT_KEYS}, key, ("webhook",), env, files)
    found_email = email(c, table["email"], key + ("email",), env, files) if "email" in table else None
    if "webhook_env" not in table and "webhook_file" not in table and "email" not in table:
        c.bad(key, "alerts need webhook_env (an environment variable holding the URL) or webhook_file, and/or "
                   "email = { to = [...], from = \"...\", smtp = \"HOST:PORT\" }")
        return None
    on = c.strings(key + ("on",), table.get("on", ["failure"]))
    if on is not None:
        for i, v in enumerate(on):
            if v not in ALERT_ON:
                c.bad(key + ("on", i), f"expected one of {', '.join(ALERT_ON)}, not {v!r}")
                on = None
                break
    if on is None or ("email" in table and found_email is None):
        return None
    return Alerts(key=key, webhook_env=table.get("webhook_env"), webhook_file=table.get("webhook_file"),
                  email=found_email, on=on, env_refs=tuple(env))


def email(c: Checker, value: Any, key: tuple, env: list, files: list) -> Email | None:
    """``email = { to, from, smtp = "HOST[:PORT]", tls, user | user_env | user_file, password_env |
    password_file, ca_file }``: the password by reference only; STARTTLS unless ``tls =
    "implicit"`` (the default on port 465); the port defaults to 587 (465 with implicit TLS)."""
    table = c.table(key, value)
    if table is None:
        return None
    before = len(c.problems)
    c.unknown(table, key, EMAIL_KEYS)
    # ca_file is a public certificate, not a secret: it is not read as one
    c.references({k: v for k, v in table.items() if k in EMAIL_KEYS and k != "ca_file"}, key, ("password",), env,
                 files)
    for k in ("to", "from", "smtp"):
        if k not in table:
            c.bad(key, f"an alert email needs to = [\"ops@example.com\"], from = \"exporter@example.com\" and "
                       f"smtp = \"HOST:PORT\" (no {k})")
    to = table.get("to")
    to = c.strings(key + ("to",), [to] if isinstance(to, str) else to) if "to" in table else None
    for i, address in enumerate(to or ()):
        _address(c, key + ("to", i) if isinstance(table["to"], list) else key + ("to",), address)
    sender = c.text(key + ("from",), table["from"]) if "from" in table else None
    if sender is not None:
        _address(c, key + ("from",), sender)
    tls = table.get("tls")
    if tls is not None and tls not in EMAIL_TLS:
        c.bad(key + ("tls",), f"expected one of {', '.join(EMAIL_TLS)}, not {tls!r}")
    host, port = _server(c, key + ("smtp",), table["smtp"]) if "smtp" in table else (None, None)
    tls = tls or ("implicit" if port == 465 else "starttls")
    user = c.text(key + ("user",), table["user"]) if "user" in table else None
    users = [k for k in ("user", "user_env", "user_file") if k in table]
    if len(users) > 1:
        c.bad(key + (users[1],), f"give one of user, user_env, user_file, not {' and '.join(users)}")
    has_password = "password_env" in table or "password_file" in table
    if bool(users) != has_password:
        c.bad(key + ((users[0],) if users else ("password_env" if "password_env" in table else "password_file",)),
              "SMTP AUTH needs a user (user, user_env or user_file) and a password (password_env or password_file)")
    ca_file = c.text(key + ("ca_file",), table["ca_file"]) if "ca_file" in table else None
    if len(c.problems) > before or to is None or sender is None or host is None or port is None:
        return None
    return Email(key=key, to=to, sender=sender, host=host, port=port or (465 if tls == "implicit" else 587), tls=tls,
                 user=user, user_env=table.get("user_env"), user_file=table.get("user_file"),
                 password_env=table.get("password_env"), password_file=table.get("password_file"), ca_file=ca_file)


def _address(c: Checker, key: tuple, value: str) -> None:
    from email.utils import parseaddr

    _name, address = parseaddr(value)
    if "@" not in address or any(ch.isspace() for ch in address) or "\n" in value or "\r" in value:
        c.bad(key, f"not an email address: {value!r}")


def _server(c: Checker, key: tuple, value: Any) -> tuple[str | None, int | None]:
    """``HOST[:PORT]`` (an IPv6 address in brackets): (host, port; 0 when not given)."""
    text = c.text(key, value)
    if text is None:
        return None, None
    if "@" in text:  # not echoed: what comes before it may be a password
        c.bad(key, "expected HOST or HOST:PORT, without a user or password (give user_env and password_env)")
        return None, None
    try:
        parts = urlsplit("//" + text)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        c.bad(key, f"expected HOST or HOST:PORT, not {text!r} ({e})")
        return None, None
    if not host or parts.path or parts.query or parts.fragment:
        c.bad(key, f"expected HOST or HOST:PORT (the SMTP server), not {text!r}")
        return None, None
    return host, port or 0
