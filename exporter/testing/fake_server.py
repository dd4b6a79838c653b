"""A fake Kizeo Forms REST v3 service that serves an account archive over real HTTP.

It speaks the routes and JSON envelopes of the shared API notes, so the web-service source can be
tested (and demonstrated) end to end without an account::

    POST /login                                      {"user","password","company"} -> token
    GET  /forms                     /forms/{f}
    GET  /forms/{f}/data/all        /forms/{f}/data/{d}        (nested shape)
    POST /forms/{f}/data/advanced   filters (= > >= < <= != like notlike, AND/OR), order, format
    GET  /forms/{f}/data/unread/{action}/{limit}[?includeupdated][&format=simple|basic]
    POST /forms/{f}/markasreadbyaction/{action}      {"data_ids": [...]}
    GET  /forms/{f}/data/{d}/medias/{name}           (streamed bytes)
    GET  /forms/{f}/exports                          custom export templates
    GET  /forms/{f}/data/{d}/pdf   /forms/{f}/data/{d}/exports/{id}   /forms/{f}/data/{d}/form_pictures/{name}
                                                     vendor documents (``fake_documents``)
    GET  /users   /groups   /group/{g}/users   /group/{g}/leaders
    GET  /lists   /lists/{id}   /lists/{id}/complete

``format`` (advanced and unread) is ``simple`` by default, as the vendor documents: the first
level only, sub-forms (tables) left out; ``basic`` gives everything. ``list_filters`` (list id ->
text) stands for a list's filters: ``/lists/{id}`` serves only the items containing the text,
``/lists/{id}/complete`` every item ("without taking in account filters"); with
``complete_route=False`` that route is absent (404), as on a service that predates it.
``refuse`` (e.g. ``("users", "groups", "lists")``) stands for a token with less than an
administrator's rights: those routes answer ``refuse_status`` (401, the status the service's
specification gives for missing rights) with an error envelope.

Authentication: the ``Authorization`` header must equal the token given at start-up (or a token
issued by ``/login`` when ``login=(user, password, company)`` is set; such tokens expire after
``token_ttl`` seconds). Anything else gets ``401 {"status":"error","message":...}``.

Faults (``Faults``) make it misbehave on a schedule counted over all requests: 429 with
``Retry-After``, 503, dropped connections, latency, malformed JSON, a 504 on an answer over
``max_answer`` records (``data/advanced``). Only the standard library
is used (``http.server.ThreadingHTTPServer``).

Behaviour that the public documentation does not pin down, chosen here (marked [guess] in the
notes): an unknown form/submission/list id is ``501`` with an error envelope; an unknown route
is ``404``; ``like``/``notlike`` use SQL ``%``/``_`` wildcards and mean "contains" when the value
has no wildcard; a submission never edited has an empty ``_update_time`` in flat records.
"""
from __future__ import annotations

import copy
import errno
import fnmatch
import hmac
import logging
import secrets
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Self

from exporter.connectors.archive.reader import ArchiveReader
from exporter.errors import ConfigError

from .fake_data import flatten, nest_submission
from .fake_faults import Faults
from .fake_routes import PREFIX, Handler

__all__ = ["FakeKizeoServer", "Faults", "flatten", "nest_submission"]

log = logging.getLogger("exporter.kizeo.fake")


class _Store:
    """The archive, indexed for random access (one form's submissions loaded on first use)."""

    def __init__(self, reader: ArchiveReader):
        self.reader = reader
        self.lock = threading.RLock()
        self.forms_index = list(reader.forms_index())
        self.users = list(reader.users_raw())
        self.groups = list(reader.groups_raw())
        self.lists = list(reader.lists_raw())
        self._subs: dict[str, dict[str, dict]] = {}
        self._media: dict[str, dict[tuple[str, str], dict]] = {}
        self.read_markers: dict[tuple[str, str], dict[str, str | None]] = {}

    def has_form(self, fid: str) -> bool:
        return any(str(f.get("id")) == fid for f in self.forms_index) and self.reader.has_form(fid)

    def form(self, fid: str) -> dict:
        return self.reader.form_raw(fid)

    def submissions(self, fid: str) -> dict[str, dict]:
        """id -> nested raw submission, in archive order."""
        with self.lock:
            if fid not in self._subs:
                subs: dict[str, dict] = {}
                for raw in self.reader.submissions_raw(fid):
                    nested = nest_submission(raw)
                    subs[str(nested.get("id"))] = nested
                self._subs[fid] = subs
                self._media[fid] = {(str(m.get("submission_id")), str(m.get("name"))): m
                                    for m in self.reader.media_index(fid)}
            return self._subs[fid]

    def media(self, fid: str, sid: str, name: str) -> dict | None:
        self.submissions(fid)
        return self._media[fid].get((sid, name))

    def put_submission(self, fid: str, nested: dict) -> None:
        with self.lock:
            subs = self.submissions(fid)
            subs[str(nested["id"])] = copy.deepcopy(nested)

    def delete_submission(self, fid: str, sid: str) -> dict:
        with self.lock:
            return self.submissions(fid).pop(str(sid))


# ---- server ---------------------------------------------------------------------------------

class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True
    fake: FakeKizeoServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-answer is normal (a timeout, Ctrl-C, a dropped download):
        one debug line, not a traceback on the console. Anything else is still printed."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLEOFError,
                            TimeoutError)):
            log.debug("client %s went away: %s", client_address, type(exc).__name__)
            return
        super().handle_error(request, client_address)


class FakeKizeoServer:
    """Serve ``archive_path`` as a Kizeo Forms REST v3 service on ``host:port`` (0 = free port)."""

    def __init__(self, archive_path: str, token: str, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, *, login: tuple[str, str, str] | None = None,
                 token_ttl: float = 3 * 24 * 3600, groups_at_top: bool = False,
                 tls: tuple[str, str] | None = None, list_filters: dict[str, str] | None = None,
                 complete_route: bool = True, refuse: tuple[str, ...] = (), refuse_status: int = 401,
                 document_bytes: int = 0):
        if not token:
            raise ValueError("the fake service needs a token to expect")
        self.reader = ArchiveReader(archive_path)
        self.store = _Store(self.reader)
        self.token = token
        self.faults = faults or Faults()
        self.login_credentials = login
        self.token_ttl = token_ttl
        self.groups_at_top = groups_at_top
        self.list_filters = {str(k): v for k, v in (list_filters or {}).items()}
        self.complete_route = complete_route
        self.document_bytes = document_bytes  # every vendor document this big (0: a few kilobytes)
        unknown = set(refuse) - {"users", "groups", "lists"}
        if unknown:
            raise ValueError(f"refuse takes users, groups, lists (not {', '.join(sorted(unknown))})")
        self.refuse = frozenset(refuse)
        self.refuse_status = refuse_status
        self.issued: dict[str, float] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.marked: list[tuple[str, str, list[str]]] = []  # (form, action, ids) per mark call
        #: called with (form, action, ids) once a mark call is applied, before it is answered: a
        #: test can hold a client there, at a known point, e.g. to kill it
        self.on_mark: Callable[[str, str, list[str]], None] | None = None
        self._count = 0
        self._media_count = 0
        self._streaks: dict[tuple[str, str], int] = {}  # (method, path) -> scheduled faults in a row
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        try:
            self.httpd = FakeHTTPServer((host, port), Handler)
        except OSError as e:
            self.reader.close()
            why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror or e})"
            raise ConfigError(f"port {port} on {host} {why}: choose another with --port N "
                              "(--port 0 picks a free one)") from None
        self.httpd.fake = self
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self.httpd.server_address[0]
        if isinstance(host, bytes):  # typed so for Unix sockets; an IP server gives a text
            host = host.decode()
        return f"{self.scheme}://{host}:{self.port}{PREFIX}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kizeo", daemon=True)
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.httpd.server_close()
            self.reader.close()

    def stop(self) -> None:
        """Stop serving and release the port and the archive (safe to call twice)."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
        self.reader.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeKizeoServer({self.base_url!r}, token=***, faults={self.faults.describe()})"

    # ---- test helpers ---------------------------------------------------------------------------
    def put_submission(self, form_id: str, nested: dict) -> None:
        """Add or replace a submission (nested shape), e.g. to simulate an edit."""
        self.store.put_submission(str(form_id), nested)

    def delete_submission(self, form_id: str, submission_id: str) -> dict:
        """Erase a submission, as a user deleting it in Kizeo; returns it (nested shape), so a
        test can put it back (``put_submission``)."""
        return self.store.delete_submission(str(form_id), str(submission_id))

    def delete_list(self, list_id: str) -> None:
        """Erase an external list, as an administrator deleting it in Kizeo."""
        self.store.lists[:] = [x for x in self.store.lists if str(x.get("id")) != str(list_id)]

    def request_count(self, pattern: str = "*") -> int:
        with self._lock:
            return sum(1 for _, p in self.requests if fnmatch.fnmatchcase(p, pattern))

    # ---- used by the routes (fake_routes) ---------------------------------------------------------
    def count_request(self, method: str, path: str) -> int:
        """Record a request; its number (1-based) over all requests, which faults are scheduled on."""
        with self._lock:
            self._count += 1
            self.requests.append((method, path))
            return self._count

    def fault_allowed(self, key: tuple[str, str], scheduled: bool) -> bool:
        """Whether a fault scheduled for this request may hit it (see ``Faults.max_in_a_row``).
        Only requests in a streak of faults are remembered."""
        limit = self.faults.max_in_a_row
        with self._lock:
            if not scheduled:
                self._streaks.pop(key, None)
                return False
            run = self._streaks.get(key, 0)
            if limit and run >= limit:
                del self._streaks[key]
                return False
            self._streaks[key] = run + 1
            return True

    def issue_token(self) -> str:
        """A new token for a successful ``/login``, valid ``token_ttl`` seconds."""
        token = secrets.token_hex(16)
        with self._lock:
            self.issued[token] = time.monotonic() + self.token_ttl
        return token

    def record_mark(self, form_id: str, action: str, ids: list[str]) -> None:
        """A mark-as-read call applied: remembered, then ``on_mark`` is called (before the answer)."""
        with self._lock:
            self.marked.append((form_id, action, ids))
        if self.on_mark is not None:
            self.on_mark(form_id, action, ids)

    def cut_media(self, path: str) -> bool:
        """Whether this media download stops halfway (``Faults.truncate_media_every``)."""
        every = self.faults.truncate_media_every
        if not every:
            return False
        with self._lock:
            self._media_count += 1
            cut = self._media_count % every == 0
        return self.fault_allowed(("media", path), cut)

    def token_ok(self, value: str | None) -> bool:
        if not value:
            return False
        if hmac.compare_digest(value.encode(), self.token.encode()):
            return True
        with self._lock:
            exp = self.issued.get(value)
        return exp is not None and time.monotonic() < exp
