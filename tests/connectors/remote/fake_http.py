"""Shared plumbing for the loopback fakes of Dropbox and SharePoint.

* ``make_tls_files(dir)``: a throw-away CA and a server certificate for 127.0.0.1/localhost, so
  the real SDKs talk HTTPS with certificate verification on (the CA file is given to them).
* ``FakeServer``: a threaded HTTP(S) server on 127.0.0.1 with a request log and a fault queue
  (HTTP status with Retry-After, or a connection dropped before/after the request is applied).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Return (ca_cert, server_cert, server_key) PEM files for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exporter test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def matches(pattern: str, route: str) -> bool:
    """A pattern starting with '/' is an exact route; anything else is a substring."""
    return route == pattern if pattern.startswith("/") else pattern in route


@dataclass
class Fault:
    """One injected failure for requests whose route matches ``route`` (see ``matches``).

    kind: "status" (answer ``status`` with ``headers``/``body``), "drop_before" (close the
    connection without applying the request), "drop_after" (apply it, then close the connection
    before answering). ``skip`` matching requests pass untouched first; ``times`` requests fail.
    """

    route: str
    kind: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    skip: int = 0
    times: int = 1


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    route: str = ""
    arg: Any = None
    fault: str | None = None


class Dropped(Exception):
    """Raised by a handler to close the connection without an answer."""


class FakeServer:
    """A threaded HTTP(S) server calling ``handler(req) -> (status, headers, body bytes)``.

    ``exempt(req)`` says which requests faults never hit (e.g. token or form-digest endpoints).
    """

    def __init__(self, handler: Handler, tls: tuple[Path, Path] | None = None,
                 exempt: Callable[[Request], bool] | None = None):
        self.handler = handler
        self.exempt = exempt or (lambda req: False)
        self.log: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                try:
                    status, headers, payload = outer._dispatch(req)
                except Dropped:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if isinstance(payload, str):
                    payload = payload.encode()
                payload = payload or b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-http", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------
    def inject(self, route: str, kind: str = "status", **kw: Any) -> Fault:
        fault = Fault(route, kind, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if matches(fault.route, route):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def calls(self, route: str) -> list[Request]:
        with self.lock:
            return [r for r in self.log if matches(route, r.route)]

    # -- dispatch -------------------------------------------------------------------------------
    def route_of(self, req: Request) -> str:
        return req.path.split("?", 1)[0]

    def _dispatch(self, req: Request) -> tuple[int, dict[str, str], Any]:
        req.route = self.route_of(req)
        with self.lock:
            self.log.append(req)
        fault = None if self.exempt(req) else self._take_fault(req.route)
        if fault is not None:
            req.fault = fault.kind
            if fault.kind == "status":
                headers, body = dict(fault.headers), fault.body
                if isinstance(body, (dict, list)):
                    headers.setdefault("Content-Type", "application/json")
                    body = json.dumps(body).encode()
                return fault.status, headers, body
            if fault.kind == "drop_before":
                raise Dropped()
        with self.lock:
            result = self.handler(req)
        if fault is not None and fault.kind == "drop_after":
            raise Dropped()
        return result


class FakeService:
    """What the Dropbox and SharePoint fakes share: a ``FakeServer`` in ``self.server`` and the
    helpers tests use to start, stop, inject faults and read the request log."""

    server: FakeServer

    @property
    def host(self) -> str:
        return self.server.host

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def inject(self, route: str, kind: str = "status", **kw: Any) -> Fault:
        return self.server.inject(route, kind, **kw)

    def calls(self, route: str) -> list[Request]:
        return self.server.calls(route)


JSON = {"Content-Type": "application/json"}


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    return status, {**JSON, **(headers or {})}, json.dumps(payload).encode()


Handler = Callable[[Request], tuple[int, dict[str, str], Any]]
