"""Real servers on loopback for the remote sink tests: pyftpdlib (FTP, FTPS with a certificate
generated here) and an asyncssh SFTP server chrooted in a temporary folder. Each server records
what clients store and has hooks to misbehave (refuse writes, answer "disk full", drop the
connection in the middle of an upload).

In CI (CI=true) a missing server package fails the test instead of skipping it."""
from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fnmatch
import io
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from exporter.model import (
    Account,
    Checkpoint,
    FieldDef,
    Form,
    Media,
    MediaRef,
    Submission,
    kind_of,
)
from exporter.sinks import RunContext
from tests.conftest import drive_sink, require_service, self_signed_cert

from .fake_http import make_tls_files

USER, PASSWORD = "alice", "s3cret pass"


def need(module: str):
    try:
        return __import__(module)
    except ImportError:
        require_service(False, f"the Python package {module}")


# ---- records -------------------------------------------------------------------------------
def _field(name, type_):
    return FieldDef(name=name, type=type_, kind=kind_of(type_), caption=name.title())


def make_records(version: int = 1, form_name: str = "Visite chantier", media_bytes: bytes | None = None,
                 n_subs: int = 3, form_id: str = "101"):
    """A small but complete stream: account, one form, submissions each with a photo, checkpoint.
    ``version`` changes one submission's comment (and so the files that hold it)."""
    fields = (_field("comment", "text"), _field("amount", "number"), _field("photo", "photo"))
    form = Form(id=form_id, name=form_name, fields=fields, raw={"id": form_id, "name": form_name})
    out = [Account(source="test"), form]
    for i in range(1, n_subs + 1):
        sid = str(1000 + i)
        comment = f"comment {i}" + (f" v{version}" if i == 1 else "")
        ref = MediaRef(form.id, sid, "photo", f"photo-{i}.jpg")
        meta = {"record_number": str(i), "create_time": "2024-05-01 10:00:00",
                "update_time": f"2024-05-0{i} 10:00:00"}
        out.append(Submission(form.id, sid, meta, {"comment": comment, "amount": Decimal(i), "photo": (ref.name,)},
                              {"comment": comment, "amount": str(i), "photo": ref.name}, media=(ref,),
                              raw={"id": sid, "fields": {"comment": {"value": comment}}}))
        data = media_bytes if media_bytes is not None else (b"\xff\xd8JPEG" + bytes([i]) * (2000 * i))
        out.append(Media(ref, "image/jpeg", lambda d=data: io.BytesIO(d), size=len(data)))
    out.append(Checkpoint(form.id, f"2024-05-0{n_subs} 10:00:00"))
    return out


def ctx(formats=("json", "csv"), run_id: str | None = None, mode: str = "full") -> RunContext:
    run_id = run_id or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return RunContext(run_id=run_id, source="test", mode=mode, formats=tuple(formats))


def run(sink, records, context=None, batch: int = 4) -> None:
    """Drive a sink like the runner does: open, batches with a commit each, close."""
    drive_sink(sink, context or ctx(), records, batch)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- the HTTPS fakes of Dropbox and SharePoint --------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(CA file, server certificate, server key) for the HTTPS fakes, made once per module."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def serve_fake(fake_class, tls):
    """Start a fake service (``FakeDropbox``, ``FakeSharePoint``) on loopback over HTTPS; the
    generator of a fixture: yields it started, stops it afterwards."""
    _ca, cert, key = tls
    fake = fake_class((cert, key)).start()
    yield fake
    fake.stop()


def upload_file(remote, tmp_path, rel: str, data: bytes, chunk: int | None = None) -> None:
    """Upload ``data`` to ``rel`` from a local file: simple upload, or an upload session in
    ``chunk``-byte pieces."""
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with open(src, "rb") as fh:
        if chunk:
            remote.put_chunked(rel, fh, len(data), chunk)
        else:
            remote.put(rel, fh, len(data))


# ---- hooks shared by both servers ----------------------------------------------------------
@dataclass
class Hooks:
    stored: list[str] = field(default_factory=list)  # every path opened for writing, in order
    deny_write: bool = False  # refuse every write (permission denied)
    disk_full: str | None = None  # glob of paths answered with "disk full"
    kill: str | None = None  # glob of paths whose upload drops the connection midway
    kill_times: int = 10 ** 6  # how many uploads to kill before letting them through
    killed: int = 0
    no_mlsd: bool = False  # answer MLSD as a server without it does (FTP)

    def should_kill(self, path: str) -> bool:
        if self.kill and fnmatch.fnmatch(path, self.kill) and self.killed < self.kill_times:
            self.killed += 1
            return True
        return False

    def stored_data(self) -> list[str]:
        """Data files stored (the sink's own state and manifest files left out)."""
        return [p for p in self.stored if "/.exporter-" not in p and not p.startswith(".exporter-")]


# ---- FTP -----------------------------------------------------------------------------------
@dataclass
class FtpServer:
    host: str
    port: int
    root: Path
    hooks: Hooks
    tls: bool = False
    ca_file: str | None = None

    def url(self, path: str = "export", user: str = USER) -> str:
        return f"{'ftps' if self.tls else 'ftp'}://{user}@{self.host}:{self.port}/{path}"


def _cert(tmp: Path) -> tuple[str, str]:
    """A self-signed CA certificate for 127.0.0.1/localhost (certificate file, key file)."""
    cert_file, key_file = self_signed_cert(tmp, file_names=("server.crt", "server.key"))
    return str(cert_file), str(key_file)


def _start_ftp(tmp_path_factory, tls: bool):
    need("pyftpdlib")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer as PyFtpServer

    base = tmp_path_factory.mktemp("ftps" if tls else "ftp")
    root = base / "root"
    root.mkdir()
    hooks = Hooks()

    class KillingFile:
        """A file being stored whose connection is dropped after the first bytes."""

        def __init__(self, fh, handler):
            self._fh, self._handler, self._n = fh, handler, 0

        def write(self, data):
            self._n += len(data)
            n = self._fh.write(data)
            if self._n >= 1000:
                handler = self._handler
                if handler.data_channel is not None:
                    handler.data_channel.close()
                handler.close()
            return n

        def __getattr__(self, name):
            return getattr(self._fh, name)

    class FS(AbstractedFS):
        def open(self, filename, mode):
            fh = super().open(filename, mode)
            if "w" in mode or "a" in mode:
                virtual = self.fs2ftp(filename)
                if hooks.should_kill(virtual):
                    return KillingFile(fh, self.cmd_channel)
            return fh

    parent = TLS_FTPHandler if tls else FTPHandler

    class Handler(parent):
        abstracted_fs = FS
        # permit_privileged_ports etc. left as defaults; loopback passive ports
        passive_ports = None
        auth_failed_timeout = 0.01  # pyftpdlib waits 3 s after a refused login by default

        def ftp_STOR(self, file, mode="w"):
            virtual = self.fs.fs2ftp(file)
            hooks.stored.append(virtual.lstrip("/"))
            if hooks.deny_write:
                self.respond("550 Not enough privileges.")
                return None
            if hooks.disk_full and fnmatch.fnmatch(virtual, hooks.disk_full):
                self.respond("552 Requested file action aborted. Exceeded storage allocation.")
                return None
            return super().ftp_STOR(file, mode)

        def ftp_MLSD(self, path):
            if hooks.no_mlsd:
                self.respond("500 Command not understood.")
                return None
            return super().ftp_MLSD(path)

    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    authorizer.add_user("reader", PASSWORD, str(root), perm="elr")
    Handler.authorizer = authorizer
    ca_file = None
    if tls:
        cert, key = _cert(base)
        Handler.certfile, Handler.keyfile = cert, key
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        ca_file = cert
    server = PyFtpServer(("127.0.0.1", 0), Handler)
    server.max_cons = 64
    port = server.socket.getsockname()[1]
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        server.close_all()

    t = threading.Thread(target=loop, name="ftp-server", daemon=True)
    t.start()
    return FtpServer("127.0.0.1", port, root, hooks, tls, ca_file), (stop, t)


@pytest.fixture
def ftp_server(tmp_path_factory):
    srv, (stop, t) = _start_ftp(tmp_path_factory, tls=False)
    yield srv
    stop.set()
    t.join(5)


@pytest.fixture
def ftps_server(tmp_path_factory):
    srv, (stop, t) = _start_ftp(tmp_path_factory, tls=True)
    yield srv
    stop.set()
    t.join(5)


# ---- SFTP ----------------------------------------------------------------------------------
@dataclass
class SftpServer:
    host: str
    port: int
    root: Path
    hooks: Hooks
    known_hosts: Path  # a known_hosts file that trusts this server
    host_key_line: str
    client_key: Path  # an encrypted private key the server accepts
    client_key_passphrase: str

    def url(self, path: str = "/export", user: str = USER) -> str:
        return f"sftp://{user}@{self.host}:{self.port}{path}"


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory):
    """Host and client keys, made once (an encrypted key export runs a slow KDF)."""
    asyncssh = need("asyncssh")
    base = tmp_path_factory.mktemp("ssh-keys")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    passphrase = "key pass phrase"
    client_key_file = base / "id_ed25519"
    client_key_file.write_bytes(client_key.export_private_key("openssh", passphrase=passphrase, rounds=4))
    client_key_file.chmod(0o600)
    return host_key, client_key, client_key_file, passphrase


@pytest.fixture
def sftp_server(tmp_path_factory, ssh_keys):
    asyncssh = need("asyncssh")
    need("paramiko")
    base = tmp_path_factory.mktemp("sftp")
    root = base / "root"
    root.mkdir()
    hooks = Hooks()
    host_key, client_key, client_key_file, passphrase = ssh_keys
    authorized = client_key.export_public_key("openssh").decode().split()[1]

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username):
            return True

        def password_auth_supported(self):
            return True

        def validate_password(self, username, password):
            return username in (USER, "reader") and password == PASSWORD

        def public_key_auth_supported(self):
            return True

        def validate_public_key(self, username, key):
            return username == USER and key.export_public_key("openssh").decode().split()[1] == authorized

    class Sftp(asyncssh.SFTPServer):
        def __init__(self, chan):
            super().__init__(chan, chroot=str(root))
            self._paths = {}
            self._user = chan.get_extra_info("username")

        def _virtual(self, path: bytes) -> str:
            return path.decode("utf-8", "surrogateescape").lstrip("/")

        def open(self, path, pflags, attrs):
            writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT))
            if writing:
                virtual = self._virtual(path)
                hooks.stored.append(virtual)
                if hooks.deny_write or self._user == "reader":
                    raise asyncssh.SFTPPermissionDenied("Permission denied")
            fh = super().open(path, pflags, attrs)
            if writing:
                self._paths[id(fh)] = virtual
            return fh

        def write(self, file_obj, offset, data):
            virtual = self._paths.get(id(file_obj))
            if virtual is not None:
                if hooks.disk_full and fnmatch.fnmatch("/" + virtual, hooks.disk_full):
                    raise OSError(errno.ENOSPC, "No space left on device")
                if offset + len(data) >= 1000 and hooks.should_kill("/" + virtual):
                    self._paths.pop(id(file_obj), None)
                    self.channel.get_connection().abort()
                    raise asyncssh.SFTPConnectionLost("killed by the test")
            return super().write(file_obj, offset, data)

        def close(self, file_obj):
            self._paths.pop(id(file_obj), None)
            return super().close(file_obj)

        def mkdir(self, path, attrs):
            if hooks.deny_write or self._user == "reader":
                raise asyncssh.SFTPPermissionDenied("Permission denied")
            return super().mkdir(path, attrs)

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, name="sftp-server", daemon=True)
    t.start()

    async def start():
        return await asyncssh.create_server(
            Server, "127.0.0.1", 0, server_host_keys=[host_key], sftp_factory=Sftp,
            allow_scp=False, process_factory=None, login_timeout=20)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    port = server.sockets[0].getsockname()[1]
    line = f"[127.0.0.1]:{port} " + " ".join(host_key.export_public_key("openssh").decode().split()[:2])
    known = base / "known_hosts"
    known.write_text(line + "\n")
    yield SftpServer("127.0.0.1", port, root, hooks, known, line, client_key_file, passphrase)

    async def stop():
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("EXPORTER_TEST_PASSWORD", PASSWORD)
    return "EXPORTER_TEST_PASSWORD"


FAST = {"retries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "timeout": 10}




from tests.objstores import _azurite_port, _moto_port, azurite, s3_server, store_tls  # noqa: E402,F401 - fixtures
