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
import datetime as dt
import email.utils
import errno
import fnmatch
import hmac
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Self
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.connectors.archive.reader import ArchiveReader
from exporter.errors import ConfigError

from .fake_data import data_format, flatten, matches, nest_submission, sort_rows
from .fake_faults import Faults

__all__ = ["FakeKizeoServer", "Faults", "flatten", "nest_submission"]

log = logging.getLogger("exporter.kizeo.fake")

PREFIX = "/rest/v3"
SUMMARY_KEYS = ("id", "record_number", "form_id", "user_id", "create_time", "answer_time", "direction")


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

class _Server(ThreadingHTTPServer):
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
                 complete_route: bool = True, refuse: tuple[str, ...] = (), refuse_status: int = 401):
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
            self.httpd = _Server((host, port), _Handler)
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

    def request_count(self, pattern: str = "*") -> int:
        with self._lock:
            return sum(1 for _, p in self.requests if fnmatch.fnmatchcase(p, pattern))

    def _next(self, method: str, path: str) -> int:
        with self._lock:
            self._count += 1
            self.requests.append((method, path))
            return self._count

    def _fault_allowed(self, key: tuple[str, str], scheduled: bool) -> bool:
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

    def _token_ok(self, value: str | None) -> bool:
        if not value:
            return False
        if hmac.compare_digest(value.encode(), self.token.encode()):
            return True
        with self._lock:
            exp = self.issued.get(value)
        return exp is not None and time.monotonic() < exp


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: answers buffered, so the status line, the headers and a small body leave in one send (the
    #: server flushes after each request; a cut download flushes before it drops the connection)
    wbufsize = 1 << 16
    server: _Server
    server_version = "FakeKizeo/1"

    def log_message(self, fmt: str, *args: Any) -> None:  # request lines only, never headers
        log.debug("%s %s", self.address_string(), fmt % args)

    # ---- plumbing -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if not data:
            return None
        return json.loads(data)

    def _send(self, status: int, obj: Any = None, *, raw: bytes | None = None,
              headers: dict[str, str] | None = None, ctype: str = "application/json; charset=utf-8") -> None:
        body = raw if raw is not None else json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop_connection(self) -> None:
        """Close the connection abruptly (no answer, or the rest of one never sent)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"status": "error", "message": message}, headers=headers)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        raw_path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._body()
        except ValueError:
            body = ValueError
        rel = raw_path.removeprefix(PREFIX)
        n = fake._next(method, unquote(rel))
        f = fake.faults
        if f.latency:
            time.sleep(f.latency)
        scheduled = next((kind for kind, every in (("drop", f.drop_every), ("429", f.rate_limit_every),
                                                   ("503", f.fail_503_every), ("malformed", f.malformed_every))
                          if every and n % every == 0), None)
        if not fake._fault_allowed((method, rel), scheduled is not None):
            scheduled = None
        if scheduled == "drop":
            return self._drop_connection()
        if scheduled == "429":
            return self._error(429, "too many requests", {"Retry-After": f.retry_after_header()})
        if scheduled == "503":
            return self._error(503, "service unavailable, try again")
        for pattern, status in f.fail_paths.items():
            if fnmatch.fnmatchcase(unquote(rel), pattern):
                return self._error(status, f"injected failure {status}")
        malformed = scheduled == "malformed" or any(fnmatch.fnmatchcase(unquote(rel), p) for p in f.malformed_paths)
        if malformed:
            return self._send(200, raw=b'{"status":"ok","data":[{"id":"1",')
        if not raw_path.startswith(PREFIX + "/"):
            return self._error(404, f"no such route: {raw_path}")
        if body is ValueError:
            return self._error(400, "the request body is not valid JSON")
        segs = [unquote(s) for s in rel.strip("/").split("/")]
        try:
            if segs == ["login"] and method == "POST":
                return self._login(body)
            if not fake._token_ok(self.headers.get("Authorization")):
                return self._error(401, "Invalid or expired token")
            return self._route(method, segs, query, body)
        except _NotFound as e:
            return self._error(501, str(e))
        except (ValueError, TypeError, KeyError) as e:
            return self._error(400, f"bad request: {e}")

    def _login(self, body: Any) -> None:
        fake = self.server.fake
        creds = fake.login_credentials
        if not creds or not isinstance(body, dict):
            return self._error(401, "login refused")
        given = (str(body.get("user", "")), str(body.get("password", "")), str(body.get("company", "")))
        if not all(hmac.compare_digest(a.encode(), b.encode()) for a, b in zip(given, creds, strict=False)):
            return self._error(401, "wrong user, password or company")
        token = secrets.token_hex(16)
        with fake._lock:
            fake.issued[token] = time.monotonic() + fake.token_ttl
        return self._send(200, {"status": "ok", "message": "", "data": {"token": token}})

    # ---- routes -------------------------------------------------------------------------------
    def _route(self, method: str, segs: list[str], query: dict, body: Any) -> None:
        fake = self.server.fake
        store = fake.store
        if method == "GET" and segs == ["forms"]:
            return self._send(200, {"status": "ok", "forms": store.forms_index})
        if segs[0] in fake.refuse or (segs[0] == "group" and "groups" in fake.refuse):
            return self._error(fake.refuse_status, "You don't have the rights to do this")
        if method == "GET" and segs == ["users"]:
            return self._send(200, {"status": "ok", "data": {"users": store.users}})
        if method == "GET" and segs == ["groups"]:
            if fake.groups_at_top:
                return self._send(200, {"status": "ok", "groups": store.groups})
            return self._send(200, {"status": "ok", "data": {"groups": store.groups}})
        if method == "GET" and len(segs) == 3 and segs[0] == "group" and segs[2] in ("users", "leaders"):
            group = next((g for g in store.groups if str(g.get("id")) == segs[1]), None)
            if group is None:
                raise _NotFound(f"unknown group id {segs[1]}")
            wanted = {str(x.get("id") if isinstance(x, dict) else x) for x in group.get(segs[2]) or []}
            return self._send(200, {"status": "ok", "data": [u for u in store.users if str(u.get("id")) in wanted]})
        if method == "GET" and segs == ["lists"]:
            summaries = [{k: lst[k] for k in ("id", "name", "class", "update_time") if k in lst} for lst in store.lists]
            return self._send(200, {"status": "ok", "lists": summaries})
        if method == "GET" and segs[0] == "lists" and (len(segs) == 2 or segs[2:] == ["complete"] and fake.complete_route):
            lst = next((x for x in store.lists if str(x.get("id")) == segs[1]), None)
            if lst is None:
                raise _NotFound(f"unknown list id {segs[1]}")
            wanted = fake.list_filters.get(segs[1])
            if len(segs) == 2 and wanted is not None:  # the list's filters apply
                lst = {**lst, "items": [i for i in lst.get("items") or [] if wanted in str(i)]}
            return self._send(200, {"status": "ok", "list": lst})
        if len(segs) >= 2 and segs[0] == "forms":
            fid = segs[1]
            if not store.has_form(fid):
                raise _NotFound(f"unknown form id {fid}")
            return self._form_route(method, fid, segs[2:], query, body)
        return self._error(404, f"no such route: /{'/'.join(segs)}")

    def _form_route(self, method: str, fid: str, rest: list[str], query: dict, body: Any) -> None:
        fake = self.server.fake
        store = fake.store
        if method == "GET" and not rest:
            return self._send(200, {"status": "ok", "message": "", "form": store.form(fid)})
        subs = store.submissions(fid)
        if method == "GET" and rest == ["data", "all"]:
            rows = [{k: s.get(k) for k in SUMMARY_KEYS if k in s} for s in list(subs.values())]
            return self._send(200, {"status": "ok", "data": rows})
        if method == "POST" and rest == ["data", "advanced"]:
            body = body or {}
            if not isinstance(body, dict):
                raise ValueError("the body must be an object")
            fmt = data_format(body.get("format"))
            filters = body.get("filters") or []
            if not isinstance(filters, list):
                raise ValueError("filters must be a list")
            flat_all = [flatten(s, fmt) for s in list(subs.values())]
            rows = [r for r in flat_all if all(matches(r, flt) for flt in filters)]
            if fake.faults.max_answer and len(rows) > fake.faults.max_answer:
                # what a gateway in front of the service answers when the search runs too long
                return self._send(504, raw=b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
                                  ctype="text/html")
            sort_rows(rows, body.get("order") or [])
            return self._send(200, {"recordsTotal": len(flat_all), "recordsFiltered": len(rows), "data": rows})
        if method == "GET" and len(rest) == 4 and rest[:2] == ["data", "unread"]:
            action, limit = rest[2], int(rest[3])
            include_updated = "includeupdated" in query
            fmt = data_format((query.get("format") or [None])[-1])
            with store.lock:
                marks = dict(store.read_markers.get((fid, action), {}))
            out = []
            for s in list(subs.values()):
                flat = flatten(s, fmt)
                sid = str(s.get("id"))
                if sid in marks and not (include_updated and (flat.get("_update_time") or "") > (marks[sid] or "")):
                    continue
                out.append(flat)
                if len(out) >= limit:
                    break
            return self._send(200, {"status": "ok", "data": out})
        if method == "POST" and len(rest) == 2 and rest[0] == "markasreadbyaction":
            action = rest[1]
            ids = (body or {}).get("data_ids") if isinstance(body, dict) else None
            if not isinstance(ids, list):
                raise ValueError("data_ids must be a list")
            ids = [str(i) for i in ids]
            with store.lock:
                marks = {} if fake.faults.ignore_read_marks else store.read_markers.setdefault((fid, action), {})
                for sid in ids:
                    s = subs.get(sid)
                    if s is not None:
                        marks[sid] = s.get("update_time") or s.get("create_time")
            with fake._lock:
                fake.marked.append((fid, action, ids))
            if fake.on_mark is not None:
                fake.on_mark(fid, action, ids)
            return self._send(200, {"status": "ok", "message": ""})
        if method == "GET" and len(rest) == 2 and rest[0] == "data":
            s = subs.get(rest[1])
            if s is None:
                raise _NotFound(f"unknown data id {rest[1]} for form {fid}")
            return self._send(200, {"status": "ok", "message": "", "data": s})
        if method == "GET" and len(rest) == 4 and rest[0] == "data" and rest[2] == "medias":
            sid, name = rest[1], rest[3]
            if sid not in subs:
                raise _NotFound(f"unknown data id {sid} for form {fid}")
            m = store.media(fid, sid, name)
            if m is None:
                return self._error(404, f"media {name} not found")
            return self._stream_file(m)
        return self._error(404, f"no such route: /forms/{fid}/{'/'.join(rest)}")

    def _stream_file(self, m: dict) -> None:
        fake = self.server.fake
        reader = fake.reader
        size = m.get("size")
        if size is None:
            size = len(reader.read_bytes(m["path"]))
        every = fake.faults.truncate_media_every
        if every:
            with fake._lock:
                fake._media_count += 1
                cut = fake._media_count % every == 0
            cut = fake._fault_allowed(("media", m["path"]), cut)
            if cut:
                self.send_response(200)
                self.send_header("Content-Type", m.get("content_type") or "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with reader.open(m["path"]) as fh:
                    self.wfile.write(fh.read(size // 2))
                self.wfile.flush()
                return self._drop_connection()
        self.send_response(200)
        self.send_header("Content-Type", m.get("content_type") or "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Last-Modified", email.utils.format_datetime(dt.datetime.now(dt.UTC), usegmt=True))
        self.end_headers()
        with reader.open(m["path"]) as fh:
            while chunk := fh.read(1 << 16):
                self.wfile.write(chunk)


class _NotFound(Exception):
    pass

