"""A protocol-faithful loopback fake of the Dropbox API v2 routes the Dropbox remote uses.

Served over HTTPS (test CA) so the official SDK runs unmodified except for its host map:
``/2/check/user``, ``/2/files/get_metadata``, ``/2/files/upload``, ``/2/files/upload_session/start``,
``/append_v2``, ``/finish``, ``/2/files/move_v2``, ``/2/files/delete_v2``,
``/2/files/create_folder_v2``, ``/2/files/list_folder`` and ``/list_folder/continue`` (pages
of at most ``limit``, else ``page_size``, entries; a recursive listing includes the folder itself;
a cursor unknown to the fake answers ``reset``) and ``/oauth2/token`` (refresh). RPC routes take JSON bodies, upload
routes the ``Dropbox-API-Arg`` header; route errors are HTTP 409 with
``{"error_summary": ..., "error": {".tag": ...}}``, bad tokens HTTP 401, throttling HTTP 429 with
``Retry-After``. Names are case-insensitive (stored by lower-cased path, displayed as given),
content hashes are computed the Dropbox way (sha256 of the sha256 of each 4 MiB block), an
optional quota answers ``insufficient_space``. Faults come from ``FakeServer.inject``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .fake_http import JSON, FakeServer, FakeService, Request, json_answer

BLOCK = 4 * 1024 * 1024


def content_hash(data: bytes) -> str:
    outer = hashlib.sha256()
    for i in range(0, len(data), BLOCK):
        outer.update(hashlib.sha256(data[i:i + BLOCK]).digest())
    return outer.hexdigest()


@dataclass
class FakeFile:
    path_display: str
    data: bytes
    id: str
    rev: str


@dataclass
class Session:
    data: bytearray = field(default_factory=bytearray)
    closed: bool = False


@dataclass
class Download:
    metadata: dict
    data: bytes


class RouteError(Exception):
    def __init__(self, summary: str, error: dict, status: int = 409):
        super().__init__(summary)
        self.summary, self.error, self.status = summary, error, status


class FakeDropbox(FakeService):
    def __init__(self, tls: tuple[Path, Path], tokens: set[str] | None = None, quota: int | None = None):
        self.tokens: set[str] = set(tokens or {"good-token"})
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> app key
        self.quota = quota
        self.files: dict[str, FakeFile] = {}
        self.folders: dict[str, str] = {}  # lower path -> display path
        self.sessions: dict[str, Session] = {}
        self.page_size = 2000  # entries per list_folder page when the call gives no ``limit``
        self.cursors: dict[str, tuple[list[dict], int]] = {}  # list_folder cursor -> (entries to give, page)
        self._ids = itertools.count(1)
        self.server = FakeServer(self._handle, tls=tls, exempt=lambda r: r.route == "/oauth2/token")

    # -- helpers for tests (and those of FakeService) ------------------------------------------
    def throttle(self, route: str, retry_after: int = 1, times: int = 1, skip: int = 0):
        body = {"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"},
                                                                  "retry_after": retry_after}}
        return self.server.inject(route, "status", status=429, headers={"Retry-After": str(retry_after)},
                                  body=body, times=times, skip=skip)

    def args(self, route: str) -> list[Any]:
        """The route argument of every call (faulted ones included), in order."""
        out = []
        for req in self.calls(route):
            raw = req.headers.get("dropbox-api-arg")
            out.append(json.loads(raw) if raw is not None else json.loads(req.body or b"null"))
        return out

    def read(self, path: str) -> bytes:
        return self.files[path.lower()].data

    def used(self) -> int:
        return sum(len(f.data) for f in self.files.values())

    # -- metadata ---------------------------------------------------------------------------------
    def _file_md(self, f: FakeFile, tag: bool) -> dict:
        md = {
            "name": f.path_display.rsplit("/", 1)[-1],
            "id": f.id,
            "client_modified": "2024-01-02T03:04:05Z",
            "server_modified": "2024-01-02T03:04:05Z",
            "rev": f.rev,
            "size": len(f.data),
            "path_lower": f.path_display.lower(),
            "path_display": f.path_display,
            "is_downloadable": True,
            "content_hash": content_hash(f.data),
        }
        if tag:
            md = {".tag": "file", **md}
        return md

    def _folder_md(self, lower: str, tag: bool) -> dict:
        display = self.folders[lower]
        md = {"name": display.rsplit("/", 1)[-1], "id": f"id:folder{abs(hash(lower)) % 10**8}",
              "path_lower": lower, "path_display": display}
        return {".tag": "folder", **md} if tag else md

    # -- path rules ---------------------------------------------------------------------------------
    @staticmethod
    def _check_path(path: Any, union: str) -> str:
        """Validate a path like the API: '/'-rooted, no empty component, no '\\', <=255 per name."""
        if not isinstance(path, str) or not path.startswith("/") or path.endswith("/") or "//" in path:
            raise RouteError(f"{union}/malformed_path/", {".tag": union, union: {".tag": "malformed_path"}})
        for part in path[1:].split("/"):
            if len(part) > 255 or "\\" in part or any(ord(c) < 32 for c in part) or part in (".", ".."):
                raise RouteError(f"{union}/malformed_path/", {".tag": union, union: {".tag": "malformed_path"}})
        return path

    def _parent_ok(self, path: str, union: str, write_failed: bool = False) -> None:
        """Parents are created implicitly, but a file in the way is a file_ancestor conflict."""
        parts = path[1:].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            anc = "/" + "/".join(parts[:i])
            if anc.lower() in self.files:
                reason = {".tag": "conflict", "conflict": {".tag": "file_ancestor"}}
                err = {".tag": union, "reason": reason} if write_failed else {".tag": union, union: reason}
                raise RouteError(f"{union}/conflict/file_ancestor/", err)

    def _make_parents(self, path: str) -> None:
        parts = path[1:].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            anc = "/" + "/".join(parts[:i])
            self.folders.setdefault(anc.lower(), anc)

    def _commit(self, path: str, data: bytes, mode: Any, union: str, write_failed: bool,
                session_id: str | None = None) -> dict:
        """Write ``data`` at ``path`` (files/upload and upload_session/finish)."""
        def fail(summary: str, reason: dict) -> RouteError:
            if write_failed:
                err = {".tag": union, "reason": reason, "upload_session_id": session_id or "none"}
            else:
                err = {".tag": union, union: reason}
            return RouteError(f"{union}/{summary}", err)

        try:
            self._check_path(path, union)
        except RouteError:
            raise fail("malformed_path/", {".tag": "malformed_path"}) from None
        self._parent_ok(path, union, write_failed)
        mode_tag = mode.get(".tag") if isinstance(mode, dict) else (mode or "add")
        lower = path.lower()
        if lower in self.folders:
            raise fail("conflict/folder/", {".tag": "conflict", "conflict": {".tag": "folder"}})
        existing = self.files.get(lower)
        if existing is not None and mode_tag == "add":
            raise fail("conflict/file/", {".tag": "conflict", "conflict": {".tag": "file"}})
        if self.quota is not None:
            after = self.used() - (len(existing.data) if existing else 0) + len(data)
            if after > self.quota:
                raise fail("insufficient_space/", {".tag": "insufficient_space"})
        self._make_parents(path)
        f = FakeFile(path_display=existing.path_display if existing else path, data=bytes(data),
                     id=existing.id if existing else f"id:{next(self._ids):012d}", rev=secrets.token_hex(8))
        self.files[lower] = f
        return self._file_md(f, tag=False)

    # -- HTTP -------------------------------------------------------------------------------------
    def _handle(self, req: Request) -> tuple[int, dict[str, str], Any]:
        if req.route == "/oauth2/token":
            return self._token(req)
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            tag = "expired_access_token" if auth[7:].startswith("expired") else "invalid_access_token"
            return json_answer(401, {"error_summary": f"{tag}/..", "error": {".tag": tag}})
        route = req.route.removeprefix("/2/")
        try:
            raw = req.headers.get("dropbox-api-arg")
            if raw is not None:
                if route != "files/download" and req.headers.get("content-type") != "application/octet-stream":
                    return 400, {"Content-Type": "text/plain"}, b"Bad HTTP \"Content-Type\" header"
                arg = json.loads(raw)
            else:
                arg = json.loads(req.body or b"null")
        except ValueError:
            return 400, {"Content-Type": "text/plain"}, b"Error in call to API function: could not decode input as JSON"
        req.arg = arg
        handler = getattr(self, "r_" + route.replace("/", "__"), None)
        if handler is None:
            return 400, {"Content-Type": "text/plain"}, f"Unknown API function: \"{route}\"".encode()
        try:
            result = handler(arg, req.body)
        except RouteError as e:
            return json_answer(e.status, {"error_summary": e.summary, "error": e.error})
        if isinstance(result, Download):  # download style: result in a header, content in the body
            return 200, {"Content-Type": "application/octet-stream",
                         "Dropbox-API-Result": json.dumps(result.metadata)}, result.data
        return 200, JSON, json.dumps(result).encode()

    def _token(self, req: Request) -> tuple[int, dict[str, str], Any]:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        known_app = self.refresh_tokens.get(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or known_app != form.get("client_id"):
            return json_answer(400, {"error": "invalid_grant", "error_description": "refresh token is malformed"})
        token = "refreshed-" + secrets.token_hex(8)
        self.tokens.add(token)
        return json_answer(200, {"access_token": token, "expires_in": 14400, "token_type": "bearer"})

    @staticmethod
    def _check_hash(arg: dict, body: bytes, union_summary: str = "content_hash_mismatch/") -> None:
        expected = arg.get("content_hash")
        if expected is not None and expected != content_hash(body):
            raise RouteError(union_summary, {".tag": "content_hash_mismatch"})

    # routes ---------------------------------------------------------------------------------------
    def r_check__user(self, arg: dict, body: bytes) -> dict:
        return {"result": arg.get("query", "")}

    def r_files__get_metadata(self, arg: dict, body: bytes) -> dict:
        path = self._check_path(arg.get("path"), "path")
        lower = path.lower()
        if lower in self.files:
            return self._file_md(self.files[lower], tag=True)
        if lower in self.folders:
            return self._folder_md(lower, tag=True)
        raise RouteError("path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})

    def r_files__download(self, arg: dict, body: bytes) -> Download:
        path = self._check_path(arg.get("path"), "path")
        f = self.files.get(path.lower())
        if f is None:
            kind = "not_file" if path.lower() in self.folders else "not_found"
            raise RouteError(f"path/{kind}/", {".tag": "path", "path": {".tag": kind}})
        return Download(self._file_md(f, tag=False), f.data)

    def r_files__upload(self, arg: dict, body: bytes) -> dict:
        self._check_hash(arg, body)
        if len(body) > 150 * 1024 * 1024:
            raise RouteError("payload_too_large/", {".tag": "payload_too_large"})
        return self._commit(arg.get("path"), body, arg.get("mode"), "path", write_failed=True)

    def r_files__upload_session__start(self, arg: dict, body: bytes) -> dict:
        self._check_hash(arg, body)
        sid = "sess-" + secrets.token_hex(6)
        self.sessions[sid] = Session(bytearray(body), bool(arg.get("close")))
        return {"session_id": sid}

    def _lookup(self, cursor: dict, union: str | None) -> Session:
        def fail(summary: str, err: dict) -> RouteError:
            if union:
                return RouteError(f"{union}/{summary}", {".tag": union, union: err})
            return RouteError(summary, err)

        session = self.sessions.get(cursor.get("session_id"))
        if session is None:
            raise fail("not_found/", {".tag": "not_found"})
        if session.closed and union is None:
            raise fail("closed/", {".tag": "closed"})
        if cursor.get("offset") != len(session.data):
            raise fail("incorrect_offset/", {".tag": "incorrect_offset", "correct_offset": len(session.data)})
        return session

    def r_files__upload_session__append_v2(self, arg: dict, body: bytes) -> None:
        session = self._lookup(arg["cursor"], None)
        self._check_hash(arg, body)
        session.data += body
        session.closed = bool(arg.get("close"))

    def r_files__upload_session__finish(self, arg: dict, body: bytes) -> dict:
        cursor = arg["cursor"]
        session = self._lookup(cursor, "lookup_failed")
        self._check_hash(arg, body)
        commit = arg["commit"]
        md = self._commit(commit.get("path"), bytes(session.data) + body, commit.get("mode"), "path",
                          write_failed=False, session_id=cursor["session_id"])
        del self.sessions[cursor["session_id"]]
        return md

    def r_files__create_folder_v2(self, arg: dict, body: bytes) -> dict:
        path = self._check_path(arg.get("path"), "path")
        lower = path.lower()
        if lower in self.folders:
            raise RouteError("path/conflict/folder/",
                             {".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "folder"}}})
        if lower in self.files:
            raise RouteError("path/conflict/file/", {".tag": "path", "path": {".tag": "conflict", "conflict": {".tag": "file"}}})
        self._parent_ok(path, "path")
        self._make_parents(path)
        self.folders[lower] = path
        return {"metadata": self._folder_md(lower, tag=False)}

    def r_files__delete_v2(self, arg: dict, body: bytes) -> dict:
        path = self._check_path(arg.get("path"), "path_lookup")
        lower = path.lower()
        if lower in self.files:
            md = self._file_md(self.files.pop(lower), tag=True)
            return {"metadata": md}
        if lower in self.folders:
            md = self._folder_md(lower, tag=True)
            for key in [k for k in self.files if k.startswith(lower + "/")]:
                del self.files[key]
            for key in [k for k in self.folders if k == lower or k.startswith(lower + "/")]:
                del self.folders[key]
            return {"metadata": md}
        raise RouteError("path_lookup/not_found/", {".tag": "path_lookup", "path_lookup": {".tag": "not_found"}})

    def r_files__move_v2(self, arg: dict, body: bytes) -> dict:
        src = self._check_path(arg.get("from_path"), "from_lookup")
        dst = self._check_path(arg.get("to_path"), "to")
        ls, ld = src.lower(), dst.lower()
        if ls not in self.files and ls not in self.folders:
            raise RouteError("from_lookup/not_found/", {".tag": "from_lookup", "from_lookup": {".tag": "not_found"}})
        if ld != ls and (ld in self.files or ld in self.folders):
            kind = "file" if ld in self.files else "folder"
            raise RouteError(f"to/conflict/{kind}/", {".tag": "to", "to": {".tag": "conflict", "conflict": {".tag": kind}}})
        if ld.startswith(ls + "/"):
            raise RouteError("cant_move_folder_into_itself/", {".tag": "cant_move_folder_into_itself"})
        self._parent_ok(dst, "to")
        self._make_parents(dst)
        if ls in self.files:
            f = self.files.pop(ls)
            f.path_display = dst
            self.files[ld] = f
            return {"metadata": self._file_md(f, tag=True)}
        for key in sorted(k for k in self.folders if k == ls or k.startswith(ls + "/")):
            display = self.folders.pop(key)
            self.folders[ld + key[len(ls):]] = dst + display[len(src):]
        for key in [k for k in self.files if k.startswith(ls + "/")]:
            f = self.files.pop(key)
            f.path_display = dst + f.path_display[len(src):]
            self.files[ld + key[len(ls):]] = f
        return {"metadata": self._folder_md(ld, tag=True)}

    def r_files__list_folder(self, arg: dict, body: bytes) -> dict:
        path = arg.get("path")
        limit = arg.get("limit")
        if path == "":  # the root is "", never "/"
            lower = ""
        else:
            lower = self._check_path(path, "path").lower()
            if lower in self.files:
                raise RouteError("path/not_folder/", {".tag": "path", "path": {".tag": "not_folder"}})
            if lower not in self.folders:
                raise RouteError("path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})
        recursive = bool(arg.get("recursive"))

        def inside(key: str) -> bool:
            if not key.startswith(lower + "/"):
                return False
            return recursive or "/" not in key[len(lower) + 1:]

        entries = [self._folder_md(lower, tag=True)] if recursive and lower else []
        entries += [self._folder_md(k, tag=True) for k in sorted(self.folders) if inside(k)]
        entries += [self._file_md(self.files[k], tag=True) for k in sorted(self.files) if inside(k)]
        return self._page(entries, limit or self.page_size)

    def r_files__list_folder__continue(self, arg: dict, body: bytes) -> dict:
        rest = self.cursors.pop(arg.get("cursor"), None)
        if rest is None:
            raise RouteError("reset/", {".tag": "reset"})
        return self._page(*rest)

    def _page(self, entries: list[dict], size: int) -> dict:
        cursor = "cursor-" + secrets.token_hex(8)
        self.cursors[cursor] = (entries[size:], size)
        return {"entries": entries[:size], "cursor": cursor, "has_more": len(entries) > size}
