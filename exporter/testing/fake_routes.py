"""The routes of the fake Kizeo service (``fake_server``): one request handler that applies the
scheduled faults, checks the token and answers each REST v3 route from the server's store, with
the service's JSON envelopes. The routes are listed in ``fake_server``'s docstring."""
from __future__ import annotations

import datetime as dt
import email.utils
import fnmatch
import hmac
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import fake_documents
from .fake_data import data_format, flatten, matches, sort_rows

if TYPE_CHECKING:
    from .fake_server import FakeHTTPServer

log = logging.getLogger("exporter.kizeo.fake")

PREFIX = "/rest/v3"
SUMMARY_KEYS = ("id", "record_number", "form_id", "user_id", "create_time", "answer_time", "direction")


class Handler(BaseHTTPRequestHandler):
    """One request: faults first, then authentication, then the route."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: FakeHTTPServer
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
        n = fake.count_request(method, unquote(rel))
        f = fake.faults
        if f.latency:
            time.sleep(f.latency)
        scheduled = next((kind for kind, every in (("drop", f.drop_every), ("429", f.rate_limit_every),
                                                   ("503", f.fail_503_every), ("malformed", f.malformed_every))
                          if every and n % every == 0), None)
        if not fake.fault_allowed((method, rel), scheduled is not None):
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
            if not fake.token_ok(self.headers.get("Authorization")):
                return self._error(401, "Invalid or expired token")
            return self._route(method, segs, query, body)
        except UnknownId as e:
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
        return self._send(200, {"status": "ok", "message": "", "data": {"token": fake.issue_token()}})

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
                raise UnknownId(f"unknown group id {segs[1]}")
            members = {str(x.get("id") if isinstance(x, dict) else x) for x in group.get(segs[2]) or []}
            return self._send(200, {"status": "ok", "data": [u for u in store.users if str(u.get("id")) in members]})
        if method == "GET" and segs == ["lists"]:
            summaries = [{k: lst[k] for k in ("id", "name", "class", "update_time") if k in lst} for lst in store.lists]
            return self._send(200, {"status": "ok", "lists": summaries})
        if method == "GET" and segs[0] == "lists" and (len(segs) == 2 or segs[2:] == ["complete"] and fake.complete_route):
            lst = next((x for x in store.lists if str(x.get("id")) == segs[1]), None)
            if lst is None:
                raise UnknownId(f"unknown list id {segs[1]}")
            wanted = fake.list_filters.get(segs[1])
            if len(segs) == 2 and wanted is not None:  # the list's filters apply
                lst = {**lst, "items": [i for i in lst.get("items") or [] if wanted in str(i)]}
            return self._send(200, {"status": "ok", "list": lst})
        if len(segs) >= 2 and segs[0] == "forms":
            fid = segs[1]
            if not store.has_form(fid):
                raise UnknownId(f"unknown form id {fid}")
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
                    sub = subs.get(sid)
                    if sub is not None:
                        marks[sid] = sub.get("update_time") or sub.get("create_time")
            fake.record_mark(fid, action, ids)
            return self._send(200, {"status": "ok", "message": ""})
        if method == "GET" and len(rest) == 2 and rest[0] == "data":
            sub = subs.get(rest[1])
            if sub is None:
                raise UnknownId(f"unknown data id {rest[1]} for form {fid}")
            return self._send(200, {"status": "ok", "message": "", "data": sub})
        if method == "GET" and rest == ["exports"]:
            return self._send(200, {"status": "ok", "exports": fake_documents.templates(store.form(fid))})
        if method == "GET" and len(rest) in (3, 4) and rest[0] == "data" and rest[2] in ("pdf", "exports", "form_pictures"):
            sub = subs.get(rest[1])
            if sub is None:
                raise UnknownId(f"unknown data id {rest[1]} for form {fid}")
            try:
                doc = fake_documents.document(store.form(fid), sub, rest[2:], fake.document_bytes)
            except fake_documents.CannotProduce as e:
                return self._error(501, str(e))
            except fake_documents.UnknownDocument as e:
                return self._error(404, str(e))
            return self._send_stream(doc.content_type, doc.size, doc.chunks, doc.headers())
        if method == "GET" and len(rest) == 4 and rest[0] == "data" and rest[2] == "medias":
            sid, name = rest[1], rest[3]
            if sid not in subs:
                raise UnknownId(f"unknown data id {sid} for form {fid}")
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
        if fake.cut_media(m["path"]):
            self.send_response(200)
            self.send_header("Content-Type", m.get("content_type") or "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with reader.open(m["path"]) as fh:
                self.wfile.write(fh.read(size // 2))
            self.wfile.flush()
            return self._drop_connection()
        with reader.open(m["path"]) as fh:
            self._send_stream(m.get("content_type") or "application/octet-stream", size, iter(lambda: fh.read(1 << 16), b""),
                              {"Last-Modified": email.utils.format_datetime(dt.datetime.now(dt.UTC), usegmt=True)})

    def _send_stream(self, ctype: str, size: int, chunks, headers: dict[str, str]) -> None:
        """A 200 answer of ``size`` bytes sent as ``chunks`` come (never all in memory)."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)


class UnknownId(Exception):
    """An unknown form, submission, group or list id: answered 501 with an error envelope [guess]."""

