"""SFTP remote, on paramiko.

URL: ``sftp://user@host:22/path``. As in the SFTP URI draft the path is absolute
(``sftp://user@host/srv/export``); ``sftp://user@host/~/export`` is relative to the login folder.

Host keys are checked against a known_hosts file (option ``known_hosts``, default
``~/.ssh/known_hosts``). An unknown host is refused with a message giving its key fingerprint and
how to trust it (``ssh-keyscan``, or the opt-in ``trust_on_first_use=True``, which records the key
in that file); a host whose key changed is always refused.

Authentication: a private key (``key_file``; its passphrase from the environment variable named by
``key_passphrase_env``) or a password (``password_env`` / ``password_file``). With neither, the
SSH agent and the default keys in ``~/.ssh`` are tried.

Uploads are replaced atomically with the ``posix-rename@openssh.com`` extension (plain rename after
removing the target on servers without it).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import os
import posixpath
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret

from .base import RemoteStat
from .catalog import SFTP
from .common import ConnectedRemote, host_and_port, server_capabilities

if TYPE_CHECKING:  # paramiko is imported when a connection opens
    import paramiko

_TESTED = "asyncssh SFTP server on loopback (password and key auth, host keys)"


BLOCK = 32 * 1024  # paramiko's largest write request


def _drain(sftp, fh) -> None:
    """Read the answers to the pipelined writes still outstanding, raising the first error.
    paramiko drops these answers when the file is closed, so a refused write (disk full, quota)
    would otherwise only show up as a wrong size."""
    reqs = getattr(fh, "_reqs", None)
    while reqs:
        sftp._read_response(reqs.popleft())


def _fingerprint(key) -> str:
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SftpRemote(ConnectedRemote):
    """One SSH connection with an SFTP session, opened on demand and reopened after a transient
    failure."""

    def __init__(self, host: str, port: int = 22, user: str | None = None, root: str = "/", *,
                 password: str | None = None, key_file: str | None = None,
                 key_passphrase: str | None = None, known_hosts: str | None = None,
                 trust_on_first_use: bool = False, timeout: float = 60.0,
                 capabilities: Capabilities | None = None):
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self._passphrase = key_passphrase
        self.known_hosts = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
        self.tofu = trust_on_first_use
        self.timeout = timeout
        self._root_arg = root
        self.root = root
        self.name = f"sftp://{user + '@' if user else ''}{host}:{port}{root if root.startswith('/') else '/' + root}"
        self.capabilities = capabilities or Capabilities(
            max_path_length=4096, max_name_length=255, rename=True, checksum=None, tested=_TESTED)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._posix_rename = True
        self._dirs: set[str] = set()  # folders known to exist

    def __repr__(self) -> str:
        return f"SftpRemote({self.name})"

    @property
    def _host_id(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # ---- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        if self._sftp is not None:
            return
        import paramiko

        remote = self

        class Policy(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                if remote.tofu:
                    client._host_keys.add(hostname, key.get_name(), key)
                    client.save_host_keys(remote.known_hosts)
                    return
                port = f"-p {remote.port} " if remote.port != 22 else ""
                raise SinkError(
                    f"host key of {hostname} is unknown ({key.get_name()} {_fingerprint(key)}), not in "
                    f"{remote.known_hosts}. Check the fingerprint with the server's administrator, then "
                    f"trust it with `ssh-keyscan {port}{remote.host} >> {remote.known_hosts}` (or "
                    f"connect once with `ssh`), or set the option trust_on_first_use=True",
                    context=remote.name)

        client = paramiko.SSHClient()
        try:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
            elif self.tofu:
                os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
                with open(self.known_hosts, "a"):
                    pass
                os.chmod(self.known_hosts, 0o600)
                client.load_host_keys(self.known_hosts)
            client.set_missing_host_key_policy(Policy())
            explicit = self.key_file is not None or self._password is not None
            client.connect(
                self.host, self.port, username=self.user, password=self._password,
                key_filename=self.key_file, passphrase=self._passphrase,
                allow_agent=not explicit, look_for_keys=not explicit,
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:  # (it is, once open_sftp has returned)
                channel.settimeout(self.timeout)
            if self._root_arg.startswith("~"):
                home = sftp.normalize(".")
                self.root = posixpath.normpath(posixpath.join(home, self._root_arg[1:].lstrip("/")))
            else:
                self.root = posixpath.normpath(self._root_arg or "/")
        except Exception as e:  # noqa: BLE001 - translated into our error tree just below
            with contextlib.suppress(Exception):
                client.close()
            raise self._translate(e, "connect") from None
        self._client, self._sftp = client, sftp
        if self.root != "/":
            self.mkdir("")

    def close(self) -> None:
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _session(self) -> paramiko.SFTPClient | None:
        return self._sftp

    def _drop(self) -> None:
        self.close()

    def _translate(self, e: BaseException, what: str) -> BaseException:
        import paramiko

        if isinstance(e, (SinkError, ConfigError)) or not isinstance(e, Exception):
            return e
        where = f"{self.name}: {what}"
        if isinstance(e, paramiko.BadHostKeyException):
            return SinkError(
                f"HOST KEY CHANGED for {self._host_id}: the server offered {e.key.get_name()} "
                f"{_fingerprint(e.key)}, {self.known_hosts} expects {_fingerprint(e.expected_key)}. "
                "This may be an attack; if the server was really re-installed, remove the old line "
                f"(`ssh-keygen -R '{self._host_id}' -f {self.known_hosts}`) and trust the new key",
                context=where)
        if isinstance(e, paramiko.PasswordRequiredException):
            return ConfigError(f"key file {self.key_file} is encrypted: give its passphrase with "
                               "key_passphrase_env", context=where)
        if isinstance(e, paramiko.AuthenticationException):
            return SinkError(f"login refused for user {self.user!r} ({e}); check the key or the password "
                             "(key_file / password_env / password_file)", context=where)
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
            # paramiko's own text is "[Errno None] Unable to connect to port N on HOST": give the
            # reason each address refused with instead
            reasons = sorted({(getattr(err, "strerror", None) or str(err)).lower() for err in e.errors.values()}) \
                or [str(e)]
            return TransientSinkError(f"cannot connect to {self.host}:{self.port} ({'; '.join(reasons)})",
                                      context=where)
        if isinstance(e, paramiko.SSHException) and "private key" in str(e).lower():
            return ConfigError(f"cannot use key file {self.key_file}: {e}", context=where)
        if isinstance(e, socket.gaierror):
            return SinkError(f"cannot resolve host {self.host!r} ({e})", context=where)
        if self.key_file and isinstance(e, FileNotFoundError) and e.filename == self.key_file:
            return ConfigError(f"key file {self.key_file} not found", context=where)
        if isinstance(e, (paramiko.SSHException, EOFError, socket.timeout, ConnectionError)):
            return TransientSinkError(f"connection failed ({type(e).__name__}: {e})", context=where)
        if isinstance(e, OSError):
            text = str(e.strerror or (e.args[0] if e.args else e))
            low = text.lower()
            if e.errno == errno.EACCES or "permission denied" in low:
                return SinkError(f"permission denied ({text})", context=where)
            if e.errno == errno.ENOENT:
                return SinkError(f"no such file or folder ({text})", context=where)
            if "space" in low or "quota" in low or e.errno in (errno.ENOSPC, errno.EDQUOT):
                return SinkError(f"disk full or quota exceeded on the server ({text})", context=where)
            if "socket" in low or "closed" in low or e.errno in (errno.ECONNREFUSED, errno.ECONNRESET,
                                                                 errno.EPIPE, errno.ETIMEDOUT):
                return TransientSinkError(f"connection failed ({text})", context=where)
            return SinkError(f"refused by the server ({text})", context=where)
        return e

    # ---- Remote ----------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        import stat as st

        target = self._abs(path)

        def do(sftp) -> RemoteStat | None:
            try:
                attrs = sftp.stat(target)
            except FileNotFoundError:
                return None
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return None
                raise
            if attrs.st_mode is not None and not st.S_ISREG(attrs.st_mode):
                return None
            return RemoteStat(int(attrs.st_size or 0))

        return self._call(f"stat {target}", do)

    def get(self, path: str, dest: BinaryIO) -> bool:
        target = self._abs(path)
        if self.stat(path) is None:
            return False
        self._call(f"download {target}", lambda sftp: sftp.getfo(target, dest))
        return True

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        target = self._abs(path)

        def do(sftp) -> None:
            with sftp.open(target, "wb") as fh:
                fh.set_pipelined(True)  # do not wait for each write's answer...
                while chunk := data.read(BLOCK):
                    fh.write(chunk)
                fh.flush()
                _drain(sftp, fh)  # ...but read every answer before closing: errors are not lost
            written = sftp.stat(target).st_size
            if written != size:
                raise TransientSinkError(f"{target} is {written} bytes after upload, expected {size}")

        self._call(f"upload {target}", do)

    def mkdir(self, path: str) -> None:
        target = self._abs(path)

        def do(sftp) -> None:
            current = ""
            for p in [p for p in target.split("/") if p]:
                current = f"{current}/{p}"
                if current in self._dirs:
                    continue
                try:
                    sftp.stat(current)
                except OSError as e:
                    if not isinstance(e, FileNotFoundError) and e.errno != errno.ENOENT:
                        raise
                    try:
                        sftp.mkdir(current)
                    except OSError as refused:
                        try:  # created meanwhile by someone else?
                            sftp.stat(current)
                        except OSError:
                            raise refused from None
                self._dirs.add(current)

        self._call(f"create folder {target}", do)

    def rename(self, src: str, dst: str) -> None:
        a, b = self._abs(src), self._abs(dst)

        def do(sftp) -> None:
            if self._posix_rename:
                try:
                    sftp.posix_rename(a, b)
                    return
                except OSError as e:
                    if "unsupported" not in str(e).lower():
                        raise
                    self._posix_rename = False
            # no posix-rename extension: SFTP v3 rename refuses an existing target
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(b)
            sftp.rename(a, b)

        self._call(f"rename {a} to {b}", do)

    def delete(self, path: str) -> None:
        target = self._abs(path)

        def do(sftp) -> None:
            try:
                sftp.remove(target)
            except OSError as e:
                if isinstance(e, FileNotFoundError) or e.errno == errno.ENOENT:
                    return
                raise

        self._call(f"delete {target}", do)

    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        import stat as st

        top = self._abs(path)

        def do(sftp) -> list[tuple[str, RemoteStat]]:
            found: list[tuple[str, RemoteStat]] = []
            folders = [""]
            while folders:
                rel = folders.pop()
                try:
                    entries = sftp.listdir_attr(f"{top}/{rel}" if rel else top)
                except OSError as e:
                    if isinstance(e, FileNotFoundError) or e.errno == errno.ENOENT:
                        continue
                    raise
                for a in entries:
                    name = f"{rel}/{a.filename}" if rel else a.filename
                    if st.S_ISDIR(a.st_mode or 0):
                        folders.append(name)
                    elif st.S_ISREG(a.st_mode or 0):
                        found.append((name, RemoteStat(int(a.st_size or 0))))
            return found

        return iter(self._call(f"list {top}", do))


def create_remote(url: str, options: dict) -> SftpRemote:
    """``sftp://`` -> an SftpRemote (its options typed as ``catalog.SFTP`` declares)."""
    options = SFTP.parse_options(options)
    try:
        import paramiko  # noqa: F401
    except ImportError:
        raise ConfigError("sftp:// needs paramiko (pip install 'exporter[sftp]')") from None
    parts = urlsplit(url)
    if parts.scheme.lower() != "sftp":
        raise ConfigError(f"not an SFTP URL: {url!r}")
    if parts.password:
        raise ConfigError("put the SFTP password in an environment variable (password_env) or a file "
                          "(password_file), not in the URL")
    host, port = host_and_port(parts, url, "sftp", 22)
    user = unquote(parts.username) if parts.username else None
    who = f"sftp://{user + '@' if user else ''}{host}"
    path = unquote(parts.path or "/")
    if path.startswith("/~"):
        path = path[1:]
    password = read_secret(options, "password", f"password for {who}")
    passphrase = read_secret(options, "key_passphrase", f"key passphrase for {who}")
    caps = server_capabilities(options, _TESTED)
    return SftpRemote(
        host, port, user, path, password=password, key_file=options["key_file"],
        key_passphrase=passphrase, known_hosts=options["known_hosts"],
        trust_on_first_use=options["trust_on_first_use"], timeout=options["timeout"], capabilities=caps,
    )

