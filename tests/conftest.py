"""Shared fixtures. Service-backed tests use ``require_service``: in CI (CI=true) a missing service
is a failure, never a silent skip; on a developer machine it skips with the reason."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port: int, tries: int = 200, host: str = "127.0.0.1") -> None:
    """Wait until a server this test started listens on ``port`` (0.25 s at most a try)."""
    for _ in range(tries):
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require_service(path is not None, f"the program {name}")
    return path  # type: ignore[return-value]


def self_signed_cert(directory: Path, common_name: str = "localhost",
                     file_names: tuple[str, str] = ("cert.pem", "key.pem")) -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1/localhost, generated with ``cryptography``:
    (certificate path, private key path), PEM files written in ``directory``. The certificate is
    its own CA: give its path to the client as the trusted CA file."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), True)
        .add_extension(ski, False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / file_names[0], directory / file_names[1]
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def drive_sink(sink, context, records, batch: int = 4) -> None:
    """Drive a sink the way the pipeline does: open, write + commit per batch of ``batch``
    records, close (``ok=False`` when anything failed)."""
    sink.open(context)
    ok = False
    try:
        for i in range(0, len(records), batch):
            sink.write(records[i:i + batch])
            sink.commit()
        ok = True
    finally:
        sink.close(ok)


@pytest.fixture
def sample_archive() -> Path:
    return SAMPLE


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """The CLI run in-process sets the root logger's level and handler (``-q``: errors only); put
    them back after each test, so a later test still sees the warnings it checks for."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for h in list(root.handlers):
        if h not in handlers and getattr(h, "_exporter", False):
            root.removeHandler(h)


@pytest.fixture(scope="session")
def age_keys(tmp_path_factory):
    """Two recipients; the identity of the first in an age identity file."""
    from pyrage import x25519

    a, b = x25519.Identity.generate(), x25519.Identity.generate()
    f = tmp_path_factory.mktemp("age-keys") / "backup.key"
    f.write_text(f"# created: for the tests\n# public key: {a.to_public()}\n{a}\n")
    f.chmod(0o600)
    return {"file": f, "identity": a, "recipients": [str(a.to_public()), str(b.to_public())], "other": b}
