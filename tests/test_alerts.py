"""Alert emails for real: an aiosmtpd server on 127.0.0.1 with STARTTLS (or implicit TLS) and a
certificate made in the test, AUTH required; `exporter jobs run` as a real process sends to it.
The email and the webhook side by side, a server whose certificate is not trusted (one logged
line, the run's result unchanged), no secret in the mail; `exporter jobs check` on the keys."""
from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from exporter.cli import cli
from tests import test_jobs_run
from tests.conftest import self_signed_cert
from tests.test_jobs_run import audit_lines, free_port

pytestmark = pytest.mark.network

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
#: a user name, not a secret: read by reference but not masked (it would blank every "exporter" in what is written)
USER, PASSWORD = "exporter", "smtp-pass-7c2e19f4"
webhook = test_jobs_run.webhook  # the local webhook receiver (a fixture)
ENV = {"SMTP_USER": USER, "SMTP_PASS": PASSWORD, "UNRELATED_SECRET": "unrelated-secret-5551"}


class Inbox:
    """What the server received: one (envelope, session facts, message) per mail."""

    def __init__(self):
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        ssl_object = server.transport.get_extra_info("ssl_object")
        tls = ssl_object.version() if ssl_object else None
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), tls, session.authenticated,
                           email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == \
        (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # (handled=False: the server answers 535 itself)


@pytest.fixture
def smtp_server(tmp_path):
    """An SMTP server (STARTTLS required, AUTH required, only over TLS) with a certificate of its
    own: (port, the CA file that trusts it, the inbox). ``implicit=True``: TLS from the first byte."""
    servers = []

    def start(implicit: bool = False):
        cert, key = self_signed_cert(tmp_path, file_names=(f"ca{len(servers)}.pem", f"key{len(servers)}.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        inbox, port = Inbox(), free_port()
        # (aiosmtpd offers AUTH over its own STARTTLS only: with TLS from the first byte, it is told so)
        tls = {"ssl_context": context, "auth_require_tls": False} if implicit else \
            {"tls_context": context, "require_starttls": True}
        server = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_required=True,
                            **tls)
        server.start()
        servers.append(server)
        return port, cert, inbox

    yield start
    for s in servers:
        s.stop()


def jobs_file(tmp_path, alerts: str, *accounts: str) -> Path:
    (tmp_path / "broken.zip").write_bytes(b"")  # an archive that is not one: its export fails at once
    known = {"good": f'[accounts.good]\nsource = "{SAMPLE}"\ndestinations = [{{ to = "out/good" }}]\n',
             "bad": '[accounts.bad]\nsource = "broken.zip"\ndestinations = [{ to = "out/bad" }]\n'}
    p = tmp_path / "jobs.toml"
    p.write_text(f'[defaults]\nstate_dir = "state"\nalerts = {alerts}\n\n' + "\n".join(known[a] for a in accounts))
    return p


def email_table(port: int, ca: Path | None, extra: str = "") -> str:
    ca_key = f', ca_file = "{ca.name}"' if ca else ""
    return (f'{{ to = ["ops@example.com", "Night Shift <night@example.com>"], from = "exporter@example.com", '
            f'smtp = "127.0.0.1:{port}", user_env = "SMTP_USER", password_env = "SMTP_PASS"{ca_key}{extra} }}')


def run(p: Path, *args, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "exporter", "jobs", "run", str(p), *args],
                          env={**os.environ, **ENV, **env}, capture_output=True, text=True, timeout=120)


def test_a_failure_is_mailed_over_starttls_with_auth_and_posted_to_the_webhook(smtp_server, webhook, tmp_path):
    hook_url, received = webhook
    port, ca, inbox = smtp_server()
    p = jobs_file(tmp_path, f'{{ webhook_env = "HOOK", email = {email_table(port, ca)}, on = ["failure"] }}',
                  "good", "bad")
    r = run(p, HOOK=hook_url)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "good     export  ok" in r.stdout and "bad      export  failed" in r.stdout
    assert r.stderr == "", r.stderr  # both alerts went through
    # one mail, for the failure: over TLS, after AUTH, to both recipients
    [(sender, recipients, tls, authenticated, msg)] = inbox.mails
    assert sender == "exporter@example.com" and recipients == ["ops@example.com", "night@example.com"]
    assert tls in ("TLSv1.2", "TLSv1.3") and authenticated
    assert msg["Subject"] == "exporter: export of account bad failed"
    assert msg["From"] == "exporter@example.com" and "night@example.com" in msg["To"]
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Message-ID"].endswith("@example.com>")
    body = msg.get_content().replace("\r\n", "\n")
    (line,) = audit_lines(tmp_path / "state" / "bad" / "audit.jsonl")
    assert body.startswith(f"exporter: export of account bad failed: {line['error']}\n")
    assert f'"id": "{line["id"]}"' in body and '"result": "failed"' in body and "broken.zip" in body
    # the webhook got the same failure, and nothing for the account that succeeded
    assert [b["account"] for _, b in received] == ["bad"]
    # no secret in the mail
    raw = msg.as_string()
    for secret in (PASSWORD, hook_url, ENV["UNRELATED_SECRET"]):
        assert secret not in raw, secret


def test_a_server_whose_certificate_is_not_trusted_fails_the_alert_not_the_run(smtp_server, tmp_path):
    port, _ca, inbox = smtp_server()
    other, _key = self_signed_cert(tmp_path, file_names=("other-ca.pem", "other-key.pem"))
    for ca in (None, other):  # the system's CAs, then a CA that did not sign it
        p = jobs_file(tmp_path, f'{{ email = {email_table(port, ca)}, on = ["success", "failure"] }}', "good")
        r = run(p)
        assert r.returncode == 0, r.stdout + r.stderr  # the run's result: its own
        assert "good     export  ok" in r.stdout
        [problem] = r.stderr.strip().splitlines()
        assert problem.endswith("; for a private CA give ca_file"), problem
        assert (f" ERROR exporter.jobs: account good: the alert email to ops@example.com, Night Shift "
                f"<night@example.com> via 127.0.0.1:{port} failed: the server's certificate is not trusted (") \
            in problem, problem
        assert "self-signed certificate" in problem or "unable to get local issuer" in problem, problem
    assert inbox.mails == []
    lines = audit_lines(tmp_path / "state" / "good" / "audit.jsonl")
    assert [x["result"] for x in lines] == ["ok", "ok"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd's, about its STARTTLS
def test_implicit_tls_and_a_refused_password(smtp_server, tmp_path):
    port, ca, inbox = smtp_server(implicit=True)
    table = email_table(port, ca, ', tls = "implicit"')
    p = jobs_file(tmp_path, f'{{ email = {table}, on = ["success"] }}', "good")
    r = run(p)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    [(_sender, _rcpt, tls, authenticated, msg)] = inbox.mails
    assert tls in ("TLSv1.2", "TLSv1.3") and authenticated and msg["Subject"] == "exporter: export of account good ok"
    r = run(p, SMTP_PASS="wrong-pass-55aa01")
    assert r.returncode == 0
    [problem] = r.stderr.strip().splitlines()
    assert "failed: the server refused the user and password (535 " in problem and "wrong-pass" not in problem
    assert len(inbox.mails) == 1


def test_a_server_without_starttls_gets_nothing_in_clear(tmp_path):
    from exporter.alerts import send_email
    from exporter.jobalerts import Email

    inbox, port = Inbox(), free_port()
    server = Controller(inbox, hostname="127.0.0.1", port=port)  # no TLS at all
    server.start()
    try:
        mail = Email(key=(), to=("ops@example.com",), sender="exporter@example.com", host="127.0.0.1", port=port)
        problem = send_email(mail, {"account": "acme", "action": "export", "result": "failed"}, tmp_path)
    finally:
        server.stop()
    assert problem == (f"the alert email to ops@example.com via 127.0.0.1:{port} failed: the server does not offer "
                       "STARTTLS (the alert is never sent in clear)")
    assert inbox.mails == []


def test_a_receiver_nobody_listens_on_is_named_in_words(tmp_path):
    """It was "ConnectionRefusedError: [Errno 111] Connection refused" (email) and a bare
    "ConnectionError" (webhook)."""
    from exporter.alerts import send, send_email
    from exporter.jobalerts import Email

    port = free_port()
    record = {"account": "acme", "action": "export", "result": "failed"}
    mail = Email(key=(), to=("ops@example.com",), sender="exporter@example.com", host="127.0.0.1", port=port)
    assert send_email(mail, record, tmp_path, attempts=1) == \
        f"the alert email to ops@example.com via 127.0.0.1:{port} failed: connection refused"
    problem = send(f"http://127.0.0.1:{port}/hooks/secret-path", record, attempts=1)
    assert problem == (f"the alert webhook http://127.0.0.1:{port}/*** refused or did not answer: connection "
                       "failed (refused, reset, or the name not found)")


def test_the_client_asks_for_verified_tls_12_or_later():
    from exporter.alerts import tls_context

    context = tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


CHECKED = """\
[defaults]
state_dir = "state"

[accounts.acme]
source = "archive.zip"
schedule = "@daily"
destinations = [{ to = "out" }]

[accounts.acme.alerts.email]
to = ["ops@example.com"]
from = "exporter@example.com"
smtp = "smtp.example.com:587"
user_env = "SMTP_USER"
password_env = "SMTP_PASS"
ca_file = "ca.pem"
"""


def check(p: Path, *args, env=None):
    return CliRunner().invoke(cli, ["jobs", "check", str(p), *args], env={**ENV, **(env or {})},
                              catch_exceptions=False)


def test_jobs_check_reads_the_email_keys(tmp_path):
    from exporter.jobsfile import load

    (tmp_path / "archive.zip").write_bytes(b"")
    self_signed_cert(tmp_path, file_names=("ca.pem", "key.pem"))
    p = tmp_path / "jobs.toml"
    p.write_text(CHECKED)
    r = check(p)
    assert r.exit_code == 0, r.output
    mail = load(p).accounts["acme"].alerts.email
    assert (mail.host, mail.port, mail.tls, mail.to) == ("smtp.example.com", 587, "starttls", ("ops@example.com",))
    assert {v for _k, v in load(p).accounts["acme"].env_refs} == set()  # the export never gets the SMTP secrets
    p.write_text(CHECKED.replace(":587", ":465"))
    assert load(p).accounts["acme"].alerts.email.tls == "implicit"
    # the environment: an unset password variable, a CA file that is not one
    p.write_text(CHECKED)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    r = check(p, env={"SMTP_PASS": None})
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"{p}:14: accounts.acme.alerts.email.password_env: environment variable SMTP_PASS is not set",
        f"{p}:15: accounts.acme.alerts.email.ca_file: ca.pem holds no CA certificate (PEM) that TLS can load",
    ]
    # the account's systemd unit names the alert's variables for its environment file
    r = CliRunner().invoke(cli, ["jobs", "crontab", str(p), "--systemd"])
    assert r.exit_code == 0 and "# this account's secrets only (SMTP_PASS, SMTP_USER)" in r.output, r.output


@pytest.mark.parametrize("table, key, words", [
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "h:587", user = "u", password = "inline-pw-0042" }',
     "accounts.acme.alerts.email.password", "inline secret: write password_env"),
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "h:587", user_env = "SMTP_USER" }',
     "accounts.acme.alerts.email.user_env", "SMTP AUTH needs a user"),
    ('{ to = ["ops@example.com"], from = "x@example.com" }', "accounts.acme.alerts.email", "no smtp"),
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "h:99999" }', "accounts.acme.alerts.email.smtp",
     "expected HOST or HOST:PORT"),
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "u:inline-pw-0042@h:587" }',
     "accounts.acme.alerts.email.smtp", "without a user or password"),
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "h", tls = "none" }',
     "accounts.acme.alerts.email.tls", "expected one of starttls, implicit"),
    ('{ to = ["not an address"], from = "x@example.com", smtp = "h" }', "accounts.acme.alerts.email.to[0]",
     "not an email address"),
    ('{ to = ["ops@example.com"], from = "x@example.com", smtp = "h", port = 25 }', "accounts.acme.alerts.email.port",
     "unknown key"),
])
def test_jobs_check_refuses_a_bad_email_table_at_its_line(tmp_path, table, key, words):
    (tmp_path / "archive.zip").write_bytes(b"")
    p = tmp_path / "jobs.toml"
    p.write_text(CHECKED.split("[accounts.acme.alerts.email]")[0] + f"alerts = {{ email = {table} }}\n")
    r = check(p, "--no-env")
    assert r.exit_code == 2
    assert r.output.startswith(f"{p}:9: {key}: ") and words in r.output, r.output
    assert "inline-pw-0042" not in r.output
