"""FTP and FTPS (explicit TLS) remote, on the standard library's ftplib.

URL: ``ftp://user@host:21/path`` or ``ftps://user@host:21/path``. As in RFC 1738 the path is
relative to the login directory; start it with two slashes (``ftp://user@host//srv/export``) for an
absolute path. The password comes from ``password_env`` (name of an environment variable) or
``password_file``; never from the URL. No user means anonymous FTP.

FTPS is explicit TLS (``AUTH TLS`` then ``PROT P``: the data connections are encrypted too). The
server certificate is verified against the system trust store, or ``ca_file``, and must match the
host name; there is no switch to turn verification off.

Errors are translated where ftplib raises them: 530 -> login refused, 550 -> permission denied
or no such path, 552/452 -> disk full or quota exceeded, 553 -> name refused (all terminal);
connection refused/reset, timeouts, 421 and other 4xx -> ``TransientSinkError``, after which the
connection is reopened by the next call.

``walk`` lists a tree (``exporter forget`` reads it) with MLSD (RFC 3659: type and size of each
entry in one answer) where the server has it, else with NLST and, for each name, CWD (a folder)
or SIZE (a file).
"""
from __future__ import annotations

import contextlib
import ftplib
import posixpath
import socket
import ssl
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError
from exporter.options import read_secret

from .base import RemoteStat
from .catalog import FTP
from .common import ConnectedRemote, host_and_port, server_capabilities

BLOCK = 64 * 1024
_TESTED = "pyftpdlib server on loopback (FTP and FTPS with a generated certificate)"


def _code(e: BaseException) -> str:
    return str(e)[:3]


class FtpRemote(ConnectedRemote):
    """One FTP(S) connection, opened on demand and reopened after a transient failure."""

    def __init__(self, host: str, port: int = 21, user: str = "anonymous", password: str = "",
                 root: str = "", *, tls: bool = False, ca_file: str | None = None,
                 timeout: float = 60.0, passive: bool = True, capabilities: Capabilities | None = None,
                 relative_root: bool = True):
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.tls = tls
        self.ca_file = ca_file
        self.timeout = timeout
        self.passive = passive
        self._root_arg = root.strip("/")
        self._relative_root = relative_root
        self.root = ("" if relative_root else "/") + self._root_arg  # refined once connected
        scheme = "ftps" if tls else "ftp"
        self.name = f"{scheme}://{user}@{host}:{port}/{'' if relative_root else '/'}{self._root_arg}"
        self.capabilities = capabilities or Capabilities(
            max_path_length=4096, max_name_length=255, rename=True, checksum=None,
            max_simple_upload=None, streaming=True,
            tested=_TESTED,
        )
        self._ftp: ftplib.FTP | None = None
        self._size_ok = True
        self._mlsd_ok = True  # False once the server refused MLSD: NLST then
        self._dirs: set[str] = set()  # folders known to exist

    def __repr__(self) -> str:
        return f"FtpRemote({self.name})"

    # ---- connection ------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"{self.name}: cannot load ca_file {self.ca_file}: {e}") from None

    def connect(self) -> None:
        if self._ftp is not None:
            return
        ftp: ftplib.FTP = ftplib.FTP_TLS(context=self._context()) if self.tls else ftplib.FTP()
        try:
            ftp.connect(self.host, self.port, timeout=self.timeout)
            ftp.login(self.user, self._password)
            if isinstance(ftp, ftplib.FTP_TLS):  # self.tls
                ftp.prot_p()
            ftp.set_pasv(self.passive)
            ftp.voidcmd("TYPE I")
            home = ftp.pwd()
        except Exception as e:  # noqa: BLE001 - translated into our error tree just below
            with contextlib.suppress(Exception):
                ftp.close()
            raise self._translate(e, "connect") from None
        self._ftp = ftp
        base = posixpath.join(home, self._root_arg) if self._relative_root else "/" + self._root_arg
        self.root = posixpath.normpath(base) if base else "/"
        if self.root != "/":
            self.mkdir("")

    def close(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            try:
                ftp.quit()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                with contextlib.suppress(Exception):
                    ftp.close()

    def _session(self) -> ftplib.FTP | None:
        return self._ftp

    def _drop(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            with contextlib.suppress(Exception):
                ftp.close()

    def _translate(self, e: BaseException, what: str) -> BaseException:
        """ftplib / socket / ssl exception -> our error tree (KeyboardInterrupt passes through)."""
        if isinstance(e, (SinkError, ConfigError)) or not isinstance(e, Exception):
            return e
        where = f"{self.name}: {what}"
        if isinstance(e, ftplib.error_perm):
            code = _code(e)
            if code == "530":
                return SinkError(f"login refused for user {self.user!r} ({e}); check the user and "
                                 "the password (password_env / password_file)", context=where)
            if code == "550":
                return SinkError(f"permission denied or no such file or folder ({e})", context=where)
            if code == "552":
                return SinkError(f"disk full or quota exceeded on the server ({e})", context=where)
            if code == "553":
                return SinkError(f"file name refused by the server ({e})", context=where)
            return SinkError(f"refused by the server ({e})", context=where)
        if isinstance(e, ftplib.error_temp):
            if _code(e) == "452":
                return SinkError(f"disk full on the server ({e})", context=where)
            return TransientSinkError(f"server busy or closing ({e})", context=where)
        if isinstance(e, ssl.SSLCertVerificationError):
            return SinkError(f"TLS certificate of {self.host} not trusted ({e.verify_message}); "
                             "give its CA with the ca_file option", context=where)
        if isinstance(e, socket.gaierror):
            return SinkError(f"cannot resolve host {self.host!r} ({e})", context=where)
        if isinstance(e, ssl.SSLError):
            return TransientSinkError(f"TLS error ({e})", context=where)
        if isinstance(e, (OSError, EOFError)):
            kind = "timed out" if isinstance(e, TimeoutError) else "connection failed"
            return TransientSinkError(f"{kind} ({type(e).__name__}: {e})", context=where)
        if isinstance(e, ftplib.Error):  # error_reply / error_proto: an answer we did not expect
            return TransientSinkError(f"unexpected answer ({e})", context=where)
        return e

    # ---- Remote ----------------------------------------------------------------------------
    def stat(self, path: str) -> RemoteStat | None:
        target = self._abs(path)
        return self._call(f"stat {target}", lambda ftp: self._stat(ftp, target))

    def _stat(self, ftp: ftplib.FTP, target: str) -> RemoteStat | None:
        if self._size_ok:
            try:
                n = ftp.size(target)
                return RemoteStat(int(n)) if n is not None else None
            except ftplib.error_perm as e:
                if _code(e) == "550":
                    return None  # no such file (or a folder)
                if _code(e) not in ("500", "501", "502", "504"):
                    raise
                self._size_ok = False  # SIZE not supported: fall back to MLST
        try:
            resp = ftp.sendcmd(f"MLST {target}")
        except ftplib.error_perm as e:
            if _code(e) == "550":
                return None
            raise
        for line in resp.splitlines()[1:]:
            facts = line.strip().split(" ", 1)[0]
            parsed = dict(f.split("=", 1) for f in facts.split(";") if "=" in f)
            if parsed.get("type", "file").lower() != "file":
                return None
            if "size" in parsed:
                return RemoteStat(int(parsed["size"]))
        return None

    def get(self, path: str, dest: BinaryIO) -> bool:
        target = self._abs(path)
        if self.stat(path) is None:
            return False
        self._call(f"download {target}", lambda ftp: ftp.retrbinary(f"RETR {target}", dest.write, BLOCK))
        return True

    def put(self, path: str, data: BinaryIO, size: int) -> None:
        target = self._abs(path)
        self._call(f"upload {target}", lambda ftp: ftp.storbinary(f"STOR {target}", data, BLOCK))

    def mkdir(self, path: str) -> None:
        target = self._abs(path)

        def mkdirs(ftp: ftplib.FTP) -> None:
            parts = [p for p in target.split("/") if p]
            current = ""
            for p in parts:
                current = f"{current}/{p}"
                if current in self._dirs:
                    continue
                try:
                    ftp.mkd(current)
                except ftplib.error_perm as e:
                    if _code(e) != "550":
                        raise
                    try:  # 550 on MKD: it exists, or we may not create it
                        ftp.cwd(current)
                    except ftplib.error_perm:
                        raise e from None
                self._dirs.add(current)

        self._call(f"create folder {target}", mkdirs)

    def rename(self, src: str, dst: str) -> None:
        a, b = self._abs(src), self._abs(dst)

        def move(ftp: ftplib.FTP) -> None:
            try:
                ftp.rename(a, b)
            except ftplib.error_perm as e:
                # servers on Windows refuse RNTO onto an existing file: remove it, rename again
                if _code(e) != "550" or self.stat(dst) is None:
                    raise
                ftp.delete(b)
                ftp.rename(a, b)

        self._call(f"rename {a} to {b}", move)

    def delete(self, path: str) -> None:
        target = self._abs(path)

        def remove(ftp: ftplib.FTP) -> None:
            try:
                ftp.delete(target)
            except ftplib.error_perm as e:
                if _code(e) == "550" and self.stat(path) is None:
                    return
                raise

        self._call(f"delete {target}", remove)

    # ---- TreeRemote ------------------------------------------------------------------------
    def walk(self, path: str) -> Iterator[tuple[str, RemoteStat]]:
        top = self._abs(path)

        def do(ftp: ftplib.FTP) -> list[tuple[str, RemoteStat]]:
            found: list[tuple[str, RemoteStat]] = []
            folders = [""]
            try:
                while folders:
                    rel = folders.pop()
                    for name, size in self._entries(ftp, posixpath.join(top, rel) if rel else top):
                        sub = f"{rel}/{name}" if rel else name
                        if size is None:
                            folders.append(sub)
                        else:
                            found.append((sub, RemoteStat(size)))
            finally:
                ftp.voidcmd("TYPE I")  # (ftplib lists in ASCII mode, where servers refuse SIZE)
            return found

        return iter(self._call(f"list {top}", do))

    def _entries(self, ftp: ftplib.FTP, folder: str) -> list[tuple[str, int | None]]:
        """(name, size) of each entry of ``folder``, size None for a sub-folder; nothing when it
        does not exist."""
        if self._mlsd_ok:
            try:
                out: list[tuple[str, int | None]] = []
                for name, facts in ftp.mlsd(folder, facts=["type", "size"]):
                    kind = facts.get("type", "").lower()
                    if kind == "dir":
                        out.append((name, None))
                    elif kind == "file":
                        out.append((name, int(facts.get("size") or 0)))
                return out  # (cdir, pdir and links left out)
            except ftplib.error_perm as e:
                if _code(e) in ("550", "501"):  # no such folder (501: pyftpdlib, vsftpd)
                    return []
                if _code(e) not in ("500", "502", "504"):
                    raise
                self._mlsd_ok = False  # no MLSD: NLST, then CWD or SIZE per name
        try:
            names = ftp.nlst(folder)
        except ftplib.error_perm as e:
            if _code(e) == "550":
                return []
            raise
        finally:
            ftp.voidcmd("TYPE I")  # (ftplib lists in ASCII mode, where servers refuse SIZE)
        out = []
        for entry in names:
            name = posixpath.basename(entry.rstrip("/"))
            if name in ("", ".", ".."):
                continue
            full = posixpath.join(folder, name)
            try:
                ftp.cwd(full)
                out.append((name, None))
                continue
            except ftplib.error_perm as e:
                if _code(e) != "550":
                    raise
            st = self._stat(ftp, full)
            if st is not None:
                out.append((name, st.size))
        return out


def create_remote(url: str, options: dict) -> FtpRemote:
    """``ftp://`` or ``ftps://`` -> an FtpRemote (its options typed as ``catalog.FTP`` declares)."""
    options = FTP.parse_options(options)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ftp", "ftps"):
        raise ConfigError(f"not an FTP URL: {url!r}")
    if parts.password:
        raise ConfigError("put the FTP password in an environment variable (--to-password-env) or a "
                          "file (password_file), not in the URL")
    host, port = host_and_port(parts, url, scheme, 21)
    user = unquote(parts.username) if parts.username else "anonymous"
    password = read_secret(options, "password", f"password for {scheme}://{user}@{host}")
    if password is None:
        password = "anonymous@" if user == "anonymous" else ""
    path = unquote(parts.path or "")
    relative = not path.startswith("//")
    caps = server_capabilities(options, _TESTED)
    return FtpRemote(host, port, user, password, path, tls=scheme == "ftps",
                     ca_file=options["ca_file"], timeout=options["timeout"], passive=options["passive"],
                     capabilities=caps, relative_root=relative)

