"""A TCP proxy on loopback between a client and a real server (moto's S3 server, Azurite), to
put TLS in front of a plain-HTTP server and to drop connections in the middle of an upload.

``FaultProxy(upstream_port, tls=(cert, key))``: every accepted connection is piped to the server;
with ``tls`` the client side speaks HTTPS with that certificate (the client verifies it against
the test CA). ``drop_after(n_bytes, times)``: the next ``times`` connections that carry more than
``n_bytes`` from the client are cut there (both sides closed, the rest never reaches the server),
which is what a dropped link looks like to the client in the middle of a request body.
"""
from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from pathlib import Path


class FaultProxy:
    def __init__(self, upstream_port: int, *, tls: tuple[Path, Path] | None = None, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self._ctx = None
        if tls is not None:
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._drop_bytes: int | None = None
        self._drop_times = 0
        self.dropped = 0
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self._ctx else 'http'}://127.0.0.1:{self.port}"

    def drop_after(self, n_bytes: int, times: int = 1) -> None:
        with self._lock:
            self._drop_bytes, self._drop_times = n_bytes, times

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self._ctx is not None:
                client.settimeout(10)
                client = self._ctx.wrap_socket(client, server_side=True)
                client.settimeout(None)
            server = socket.create_connection(self.upstream, timeout=10)
            server.settimeout(None)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                client.close()
            return
        with self._lock:
            self.connections += 1
            self._conns += [client, server]
        self._pipe(client, server)

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        """Both directions in this one thread (an SSL socket must not be read and written by two
        threads at once)."""
        sent = 0  # bytes from the client on this connection
        try:
            while not self._stop.is_set():
                if isinstance(client, ssl.SSLSocket) and client.pending():
                    ready = [client]
                else:
                    ready, _, _ = select.select([client, server], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is server:
                        client.sendall(data)
                        continue
                    with self._lock:
                        limit = self._drop_bytes if self._drop_times > 0 else None
                        cut = limit is not None and sent + len(data) > limit
                        if cut:
                            self._drop_times -= 1
                            self.dropped += 1
                    if cut:
                        server.sendall(data[: max(0, limit - sent)])
                        return
                    sent += len(data)
                    server.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(5)
