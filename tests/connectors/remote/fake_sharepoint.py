"""A protocol-faithful loopback fake of the SharePoint REST (``/_api``) routes the remote uses.

Routes, as ``office365-rest-python-client`` sends them (found by running the SDK against a
logging server), all under ``{site}/_api/``:

* ``POST contextInfo`` -> the form digest (``X-RequestDigest`` is then required on every POST);
* ``GET Web/getFileByServerRelativePath(DecodedUrl='...')`` -> file properties (``Length``...);
  the same URL with ``POST`` + ``X-HTTP-Method: DELETE`` deletes the file;
* ``GET Web/GetFileById('guid')/$value`` -> the content (the SDK re-addresses a loaded file by id);
* ``GET Web/getFolderByServerRelativePath(DecodedUrl='...')`` -> folder properties, and its
  ``/Files`` and ``/Folders`` -> the collections of the files and sub-folders directly in it
  (``{"d": {"results": [...]}}``, sorted by name; a missing folder is 404);
* ``POST .../Folders/Add('name')`` and ``POST .../Files/add(overwrite=true,url='name')`` (body =
  file content);
* ``POST .../startUpload(uploadID='id')``, ``continueUpload(uploadID='id',fileOffset=N)``,
  ``finishUpload(uploadID='id',fileOffset=N)`` (bodies = chunks) and ``GetUploadStatus``
  (JSON body ``{"uploadId": ...}``) on a file;
* ``POST SP.MoveCopyUtil.MoveFileByPath`` (JSON ``srcPath``/``destPath``/``overwrite``/``options``).

Answers use the OData verbose JSON the SDK asks for (``{"d": {...}}``), errors the SharePoint
shape ``{"error": {"code": "<hresult>, <type>", "message": {"lang", "value"}}}``. Names compare
without case; names with forbidden characters and paths longer than 400 characters are refused;
an optional quota answers HTTP 507. Faults come from ``FakeServer.inject``.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .fake_http import FakeServer, FakeService, Request

VERBOSE = {"Content-Type": "application/json;odata=verbose;charset=utf-8"}
FORBIDDEN = set('"*:<>?\\|')


def sp_error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    body = {"error": {"code": code, "message": {"lang": "en-US", "value": message}}}
    return status, {**VERBOSE, **(headers or {})}, json.dumps(body).encode()


def ok(payload: Any):
    return 200, dict(VERBOSE), json.dumps({"d": payload}).encode()


class SPFail(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.answer = sp_error(status, code, message)


NOT_FOUND = (404, "-2147024894, System.IO.FileNotFoundException", "File Not Found.")
DIR_NOT_FOUND = (404, "-2147024893, System.IO.DirectoryNotFoundException", "Folder not found.")


@dataclass
class SPFile:
    path: str  # display server-relative path
    data: bytes
    unique_id: str


_FUNC = re.compile(r"^(?P<name>[A-Za-z_.]+)(?:\((?P<args>.*)\))?$", re.DOTALL)
_PATH_FUNC = re.compile(r"^Web/(?P<kind>getFileByServerRelativePath|getFolderByServerRelativePath)"
                        r"\(DecodedUrl='(?P<url>(?:[^']|'')*)'\)(?P<tail>/.*)?$", re.IGNORECASE | re.DOTALL)


_BY_ID = re.compile(r"^Web/GetFileById\('(?P<id>[0-9a-fA-F-]+)'\)(?P<tail>/.*)?$", re.IGNORECASE | re.DOTALL)


def _parse_args(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """OData function arguments: ``'a''b'``, ``k='v'``, ``k=true``, ``k=12``."""
    pos: list[Any] = []
    named: dict[str, Any] = {}
    if not text:
        return pos, named
    for m in re.finditer(r"(?:(?P<key>\w+)=)?(?:'(?P<s>(?:[^']|'')*)'|(?P<v>[^,]+))\s*(?:,|$)", text):
        value: Any
        if m.group("s") is not None:
            value = m.group("s").replace("''", "'")
        else:
            raw = m.group("v").strip()
            value = {"true": True, "false": False}.get(raw.lower(), int(raw) if raw.lstrip("-").isdigit() else raw)
        if m.group("key"):
            named[m.group("key").lower()] = value
        else:
            pos.append(value)
    return pos, named


class FakeSharePoint(FakeService):
    def __init__(self, tls: tuple[Path, Path] | None = None, site: str = "/sites/Team",
                 libraries: tuple[str, ...] = ("Shared Documents",), tokens: set[str] | None = None,
                 quota: int | None = None):
        self.site = site
        self.tokens: set[str] = set(tokens or {"sp-token"})
        self.quota = quota
        self.digests: set[str] = set()
        self.folders: dict[str, str] = {f"{site}/{lib}".lower(): f"{site}/{lib}" for lib in libraries}
        self.files: dict[str, SPFile] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.server = FakeServer(self._handle, tls=tls, exempt=lambda r: r.route.lower().endswith("/_api/contextinfo"))
        self.server.route_of = lambda req: unquote(req.path.split("?", 1)[0])  # type: ignore[method-assign]

    # -- helpers for tests (and those of FakeService) ------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.server.scheme}://{self.server.host}{self.site}"

    def throttle(self, route: str, status: int = 429, retry_after: int = 1, times: int = 1, skip: int = 0):
        body = {"error": {"code": "-2147024860, Microsoft.SharePoint.SPQueryThrottledException",
                          "message": {"lang": "en-US", "value": "The request has been throttled."}}}
        return self.server.inject(route, "status", status=status, body=body, times=times, skip=skip,
                                  headers={"Retry-After": str(retry_after)})

    def read(self, path: str) -> bytes:
        return self.files[path.lower()].data

    def used(self) -> int:
        return sum(len(f.data) for f in self.files.values())

    # -- model ------------------------------------------------------------------------------------
    def _file_json(self, f: SPFile) -> dict:
        name = f.path.rsplit("/", 1)[-1]
        return {
            "__metadata": {"id": f"Web/GetFileByServerRelativePath(decodedurl='{f.path}')", "type": "SP.File",
                           "uri": f"{self.base}/_api/Web/GetFileByServerRelativePath(decodedurl='{f.path}')"},
            "CheckInComment": "", "CheckOutType": 2, "ContentTag": f"{{{f.unique_id}}},1,1",
            "Exists": True, "Length": str(len(f.data)), "Level": 1, "MajorVersion": 1, "MinorVersion": 0,
            "Name": name, "ServerRelativeUrl": f.path,
            "ServerRelativePath": {"__metadata": {"type": "SP.ResourcePath"}, "DecodedUrl": f.path},
            "TimeCreated": "2024-01-02T03:04:05Z",
            "TimeLastModified": "2024-01-02T03:04:05Z", "Title": None, "UIVersion": 512,
            "UIVersionLabel": "1.0", "UniqueId": f.unique_id,
        }

    def _folder_json(self, path: str) -> dict:
        return {
            "__metadata": {"id": f"Web/GetFolderByServerRelativePath(decodedurl='{path}')", "type": "SP.Folder",
                           "uri": f"{self.base}/_api/Web/GetFolderByServerRelativePath(decodedurl='{path}')"},
            "Exists": True, "IsWOPIEnabled": False,
            "ItemCount": sum(1 for k in self.files if k.rsplit("/", 1)[0] == path.lower()),
            "Name": path.rsplit("/", 1)[-1], "ServerRelativeUrl": path,
            "UniqueId": str(uuid.uuid5(uuid.NAMESPACE_URL, path.lower())),
            "TimeCreated": "2024-01-02T03:04:05Z", "TimeLastModified": "2024-01-02T03:04:05Z",
        }

    def _check_name(self, full: str) -> None:
        if len(full) > 400:
            raise SPFail(400, "-2147024690, System.IO.PathTooLongException",
                         "The specified file or folder name is too long. The URL path for all files and folders "
                         "must be 400 characters or less.")
        name = full.rsplit("/", 1)[-1]
        if not name or name != name.strip(" ") or any(c in FORBIDDEN or ord(c) < 32 for c in name):
            raise SPFail(400, "-2130575245, Microsoft.SharePoint.SPException",
                         f"The file or folder name \"{name}\" contains characters that are not permitted.")

    def _folder_of(self, path: str) -> str:
        key = path.rstrip("/").lower()
        if key not in self.folders:
            raise SPFail(*DIR_NOT_FOUND)
        return self.folders[key]

    def _store(self, full: str, data: bytes) -> SPFile:
        self._check_name(full)
        parent = self._folder_of(full.rsplit("/", 1)[0])
        full = f"{parent}/{full.rsplit('/', 1)[-1]}"
        key = full.lower()
        if key in self.folders:
            raise SPFail(400, "-2130575257, Microsoft.SharePoint.SPException", f"A folder named {full} exists.")
        existing = self.files.get(key)
        if self.quota is not None and self.used() - (len(existing.data) if existing else 0) + len(data) > self.quota:
            raise SPFail(507, "-2147024784, Microsoft.SharePoint.SPQuotaExceededException",
                         "Your changes could not be saved because this SharePoint Web site has exceeded the storage quota limit.")
        f = SPFile(existing.path if existing else full, bytes(data), existing.unique_id if existing else str(uuid.uuid4()))
        self.files[key] = f
        return f

    # -- HTTP -------------------------------------------------------------------------------------
    def _handle(self, req: Request):
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {"Content-Type": "application/json",
                         "WWW-Authenticate": 'Bearer realm="fake", client_id="00000003-0000-0ff1-ce00-000000000000"'}, \
                json.dumps({"error_description": "Invalid JWT token. The token is expired or malformed."}).encode()
        prefix = f"{self.site}/_api/"
        if not req.route.lower().startswith(prefix.lower()):
            return sp_error(404, "-2147024894, System.IO.FileNotFoundException", f"No site at {req.route}")
        api = req.route[len(prefix):]
        if api.lower() == "contextinfo" and req.method == "POST":
            digest = "0x" + uuid.uuid4().hex.upper() + ",01 Jan 2024 00:00:00 -0000"
            self.digests.add(digest)
            return ok({"GetContextWebInformation": {
                "__metadata": {"type": "SP.ContextWebInformation"}, "FormDigestTimeoutSeconds": 1800,
                "FormDigestValue": digest, "LibraryVersion": "16.0.0.0", "SiteFullUrl": self.base,
                "SupportedSchemaVersions": {"__metadata": {"type": "Collection(Edm.String)"},
                                            "results": ["14.0.0.0", "15.0.0.0"]},
                "WebFullUrl": self.base}})
        if req.method == "POST" and req.headers.get("x-requestdigest") not in self.digests:
            return sp_error(403, "-2130575252, Microsoft.SharePoint.SPException",
                            "The security validation for this page is invalid and might be corrupted. "
                            "Please use your web browser's Back button to try your operation again.")
        try:
            if api == "SP.MoveCopyUtil.MoveFileByPath" and req.method == "POST":
                return self._move(json.loads(req.body or b"{}"))
            by_id = _BY_ID.match(api)
            if by_id is not None:  # the SDK re-addresses a loaded file by its UniqueId
                f = next((f for f in self.files.values() if f.unique_id.lower() == by_id.group("id").lower()), None)
                if f is None:
                    raise SPFail(*NOT_FOUND)
                return self._file_op(req, f.path, (by_id.group("tail") or "").lstrip("/"))
            m = _PATH_FUNC.match(api)
            if m is None:
                return sp_error(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException",
                                f"The expression \"{api}\" is not valid.")
            target = m.group("url").replace("''", "'")
            tail = (m.group("tail") or "").lstrip("/")
            if m.group("kind").lower() == "getfilebyserverrelativepath":
                return self._file_op(req, target, tail)
            return self._folder_op(req, target, tail)
        except SPFail as e:
            return e.answer

    def _file_op(self, req: Request, target: str, tail: str):
        key = target.lower()
        if not tail:
            if req.method == "GET":
                if key not in self.files:
                    raise SPFail(*NOT_FOUND)
                return ok(self._file_json(self.files[key]))
            if req.method == "POST" and req.headers.get("x-http-method", "").upper() == "DELETE":
                if key not in self.files:
                    raise SPFail(*NOT_FOUND)
                del self.files[key]
                for sid in [s for s, v in self.sessions.items() if v["path"] == key]:
                    del self.sessions[sid]
                return 200, {}, b""
            raise SPFail(405, "-1, System.InvalidOperationException", "Method not allowed")
        if tail == "$value" and req.method == "GET":
            if key not in self.files:
                raise SPFail(*NOT_FOUND)
            return 200, {"Content-Type": "application/octet-stream"}, self.files[key].data
        fm = _FUNC.match(tail)
        if fm is None or req.method != "POST":
            raise SPFail(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", f"Bad request {tail}")
        name = fm.group("name").lower()
        _pos, args = _parse_args(fm.group("args"))
        if key not in self.files:
            raise SPFail(*NOT_FOUND)
        f = self.files[key]
        if name == "startupload":
            sid = str(args.get("uploadid"))
            if sid in self.sessions:
                raise SPFail(400, "-2147024809, System.ArgumentException", "An upload with this id was already started.")
            self.sessions[sid] = {"path": key, "data": bytearray(req.body)}
            return ok({"StartUpload": str(len(req.body))})
        if name in ("continueupload", "finishupload"):
            sid = str(args.get("uploadid"))
            session = self.sessions.get(sid)
            if session is None or session["path"] != key:
                raise SPFail(404, "-2147024809, System.ArgumentException", "The upload session was not found.")
            if int(args.get("fileoffset", -1)) != len(session["data"]):
                raise SPFail(400, "-2147018894, Microsoft.SharePoint.SPFileUploadOffsetException",
                             f"The file offset {args.get('fileoffset')} does not match the expected offset "
                             f"{len(session['data'])}.")
            if name == "continueupload":
                session["data"] += req.body
                return ok({"ContinueUpload": str(len(session["data"]))})
            stored = self._store(f.path, bytes(session["data"]) + req.body)
            del self.sessions[sid]
            return ok(self._file_json(stored))
        if name == "getuploadstatus":
            sid = str(json.loads(req.body or b"{}").get("uploadId"))
            session = self.sessions.get(sid)
            if session is None:
                raise SPFail(404, "-2147024809, System.ArgumentException", "The upload session was not found.")
            return ok({"__metadata": {"type": "SP.Utilities.UploadStatus"},
                       "ExpectedContentRange": f"{len(session['data'])}-",
                       "ExpirationDateTime": "2099-01-01T00:00:00Z", "UploadId": sid})
        raise SPFail(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", f"Unknown method {tail}")

    def _folder_op(self, req: Request, target: str, tail: str):
        folder = self._folder_of(target)
        if not tail:
            if req.method != "GET":
                raise SPFail(405, "-1, System.InvalidOperationException", "Method not allowed")
            return ok(self._folder_json(folder))
        if tail.lower() in ("files", "folders") and req.method == "GET":
            def child(key: str) -> bool:
                return key.rsplit("/", 1)[0] == folder.lower()

            if tail.lower() == "files":
                results = [self._file_json(self.files[k]) for k in sorted(self.files) if child(k)]
            else:
                results = [self._folder_json(self.folders[k]) for k in sorted(self.folders) if child(k)]
            return ok({"results": results})
        fm = re.match(r"^(?P<coll>Files|Folders)/(?P<fn>add)\((?P<args>.*)\)$", tail, re.IGNORECASE | re.DOTALL)
        if fm is None or req.method != "POST":
            raise SPFail(400, "-1, Microsoft.SharePoint.Client.InvalidClientQueryException", f"Bad request {tail}")
        pos, args = _parse_args(fm.group("args"))
        if fm.group("coll").lower() == "folders":
            name = str(pos[0] if pos else args.get("url", ""))
            full = f"{folder}/{name}"
            self._check_name(full)
            if full.lower() in self.files:
                raise SPFail(400, "-2130575257, Microsoft.SharePoint.SPException", f"A file named {full} exists.")
            self.folders.setdefault(full.lower(), full)
            return ok(self._folder_json(self.folders[full.lower()]))
        name = str(args.get("url", pos[0] if pos else ""))
        full = f"{folder}/{name}"
        if full.lower() in self.files and not args.get("overwrite", False):
            raise SPFail(400, "-2130575257, Microsoft.SharePoint.SPException",
                         f"A file with the name {full} already exists.")
        return ok(self._file_json(self._store(full, req.body)))

    def _move(self, body: dict):
        def rel(p: Any) -> str:
            url = (p or {}).get("DecodedUrl", "") if isinstance(p, dict) else str(p or "")
            return urlsplit(url).path if "://" in url else url

        src, dst = rel(body.get("srcPath")), rel(body.get("destPath"))
        overwrite = bool(body.get("overwrite", False))
        keep_both = bool((body.get("options") or {}).get("KeepBoth", True))
        if src.lower() not in self.files:
            raise SPFail(*NOT_FOUND)
        self._check_name(dst)
        parent = self._folder_of(dst.rsplit("/", 1)[0])
        dst = f"{parent}/{dst.rsplit('/', 1)[-1]}"
        if dst.lower() in self.files and dst.lower() != src.lower():
            if keep_both:
                stem, dot, ext = dst.rpartition(".")
                dst = f"{stem} 1{dot}{ext}" if dot else f"{dst} 1"
            elif not overwrite:
                raise SPFail(400, "-2130575257, Microsoft.SharePoint.SPException",
                             f"The destination file already exists: {dst}.")
        f = self.files.pop(src.lower())
        self.files.pop(dst.lower(), None)
        f.path = dst
        self.files[dst.lower()] = f
        return ok({"MoveFileByPath": None})
