"""The account archive: a documented directory or zip that is both a sink and a source.

Layout (``format_version`` 1), the same inside a zip::

    manifest.json                      written last: format, version, account, exported_at,
                                       counts per entity, {path: {sha256, size}} of every file
    users.jsonl                        one user per line, as served by GET /users
    groups.jsonl                       one group per line, as served by GET /groups
    lists.jsonl                        one external list per line, with its raw item lines
    forms.jsonl                        one form summary per line (id, name, class, update_time)
    forms/<id>/form.json               the form definition, as served by GET /forms/{id}
    forms/<id>/submissions.jsonl       one submission per line, as served (nested or flat shape)
    forms/<id>/media.jsonl             one media per line: submission_id, field, subform, row, name,
                                       path, content_type, size, sha256
    forms/<id>/media/<sub id>/<name>   the media bytes (names made safe; original name in media.jsonl)

JSON is UTF-8, written with the service's key order, so archive -> source -> archive reproduces
every file byte for byte and the manifest hashes match.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from exporter import fastjson
from exporter.capabilities import Capabilities
from exporter.errors import ArchiveError, BadAnswerError, ConfigError, NotFoundError, SinkError, os_error_text
from exporter.fsutil import FILE_MODE
from exporter.model import (
    Account,
    Checkpoint,
    Form,
    FormPart,
    Media,
    Submission,
)
from exporter.naming import safe_filename
from exporter.records import (
    parse_form,
    parse_group,
    parse_list,
    parse_submission,
    parse_user,
    submission_id,
)
from exporter.sinks import RunContext

FORMAT = "exporter-account-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _entry_line(rel: str, entry: dict) -> str:
    return f"{json.dumps(rel, ensure_ascii=False)}: {json.dumps(entry, separators=(', ', ': '))}"


def form_dir(form_id: str) -> str:
    return "forms/" + safe_filename(str(form_id))


def media_path(form_id: str, submission_id: str, name: str) -> str:
    return f"{form_dir(form_id)}/media/{safe_filename(str(submission_id))}/{safe_filename(name)}"


# ============================================================================================
# Reading
# ============================================================================================


class ArchiveReader:
    """Read an archive directory or zip. Files are streamed; nothing is loaded whole except the
    manifest and one form definition at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile:
                raise ArchiveError(f"{self.path} is not a zip archive") from None
            names = self._zip.namelist()
            # a zip may hold the archive at its root or inside one top folder
            self._prefix = ""
            if MANIFEST not in names:
                tops = [n for n in names if n.endswith("/" + MANIFEST) and n.count("/") == 1]
                if tops:
                    self._prefix = tops[0][: -len(MANIFEST)]
        elif self.path.is_dir():
            self._prefix = ""
        else:
            raise ArchiveError(f"no account archive at {self.path}")
        if not self.exists(MANIFEST):
            raise ArchiveError(f"{self.path} has no {MANIFEST}: not an account archive")
        self.manifest = self._manifest_head()
        if self.manifest.get("format") != FORMAT:
            raise ArchiveError(f"{self.path}: not an {FORMAT} (format={self.manifest.get('format')!r})")
        if int(self.manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise ArchiveError(f"{self.path}: format version {self.manifest.get('format_version')} is newer "
                               f"than this exporter understands ({FORMAT_VERSION})")

    def close(self) -> None:
        if self._zip:
            self._zip.close()

    # ---- manifest --------------------------------------------------------------------------
    def _manifest_lines(self) -> Iterator[str]:
        with self.open(MANIFEST) as fh:
            yield from io.TextIOWrapper(fh, encoding="utf-8")

    def _manifest_head(self) -> dict:
        """Everything in the manifest but ``files`` (which can hold hundreds of thousands of
        entries): read up to the ``"files"`` line this module writes last. A manifest laid out
        otherwise (edited by hand, another tool) is parsed whole instead."""
        head: list[str] = []
        for line in self._manifest_lines():
            if line.strip() == '"files": {':
                try:
                    parsed = json.loads("".join(head).rstrip().rstrip(",") + "}")
                except ValueError:
                    break
                if isinstance(parsed, dict) and "format" in parsed:  # written by us: files come last
                    return parsed
                break
            head.append(line)
        try:
            whole = json.loads(self.read_bytes(MANIFEST))
        except ValueError as e:
            raise ArchiveError(f"{MANIFEST} is not valid JSON: {e}") from None
        if not isinstance(whole, dict):
            raise ArchiveError(f"{MANIFEST} is not a JSON object")
        whole.pop("files", None)
        return whole

    def iter_files(self) -> Iterator[tuple[str, dict]]:
        """``(path, {sha256, size})`` for every file the manifest lists, streamed line by line
        from the layout this module writes (one entry per line); any other layout is parsed whole."""
        lines = self._manifest_lines()
        for line in lines:
            if line.strip() == '"files": {':
                break
        else:
            yield from self._whole_files()
            return
        first = True
        for line in lines:
            s = line.strip()
            if s == "}":  # the end of the file list
                return
            try:
                rel, entry = next(iter(json.loads("{" + s.rstrip(",") + "}").items()))
            except (ValueError, StopIteration):
                if first:  # not our layout at all
                    yield from self._whole_files()
                    return
                raise ArchiveError(f"{MANIFEST}: malformed file entry {s[:80]!r}") from None
            first = False
            yield rel, entry
        raise ArchiveError(f"{MANIFEST} ends inside its file list")

    def _whole_files(self) -> Iterator[tuple[str, dict]]:
        try:
            whole = json.loads(self.read_bytes(MANIFEST))
        except ValueError as e:
            raise ArchiveError(f"{MANIFEST} is not valid JSON: {e}") from None
        yield from (whole.get("files") or {}).items()

    def files(self) -> dict[str, dict]:
        """The whole file list as a dict (tests and small archives; prefer ``iter_files``)."""
        return dict(self.iter_files())

    # ---- files ---------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        if self._zip:
            try:
                self._zip.getinfo(self._prefix + rel)
                return True
            except KeyError:
                return False
        return (self.path / rel).is_file()

    def open(self, rel: str) -> IO[bytes]:
        if ".." in rel.split("/"):
            raise ArchiveError(f"unsafe path in archive: {rel}")
        try:
            if self._zip:
                return self._zip.open(self._prefix + rel)
            return open(self.path / rel, "rb")
        except (KeyError, FileNotFoundError):
            raise ArchiveError(f"{rel} is missing from the archive") from None

    def size(self, rel: str) -> int | None:
        """Stored size of one file in bytes (None when absent)."""
        try:
            if self._zip:
                return self._zip.getinfo(self._prefix + rel).file_size
            return (self.path / rel).stat().st_size
        except (KeyError, OSError):
            return None

    def read_bytes(self, rel: str) -> bytes:
        with self.open(rel) as fh:
            return fh.read()

    def file_list(self) -> Iterator[str]:
        """Every file in the archive (relative paths), manifest included."""
        if self._zip:
            for n in self._zip.namelist():
                if n.startswith(self._prefix) and not n.endswith("/"):
                    yield n[len(self._prefix):]
        else:
            for p in sorted(self.path.rglob("*")):
                if p.is_file():
                    yield p.relative_to(self.path).as_posix()

    def jsonl(self, rel: str) -> Iterator[dict]:
        if not self.exists(rel):
            return
        with self.open(rel) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield fastjson.loads(line)
                except ValueError as e:  # UnicodeDecodeError included
                    raise ArchiveError(f"{rel} line {n} is not valid JSON: {e}") from None

    def json(self, rel: str) -> Any:
        try:
            return json.loads(self.read_bytes(rel))
        except ValueError as e:
            raise ArchiveError(f"{rel} is not valid JSON: {e}") from None

    # ---- entities ------------------------------------------------------------------------
    def account(self) -> dict:
        return dict(self.manifest.get("account") or {})

    def forms_index(self) -> Iterator[dict]:
        return self.jsonl("forms.jsonl")

    def has_form(self, form_id: str) -> bool:
        return self.exists(f"{form_dir(form_id)}/form.json")

    def form_raw(self, form_id: str) -> dict:
        if not self.has_form(form_id):
            raise NotFoundError(f"unknown form id {form_id!r}")
        return self.json(f"{form_dir(form_id)}/form.json")

    def submissions_raw(self, form_id: str) -> Iterator[dict]:
        return self.jsonl(f"{form_dir(form_id)}/submissions.jsonl")

    def media_index(self, form_id: str) -> Iterator[dict]:
        return self.jsonl(f"{form_dir(form_id)}/media.jsonl")

    def users_raw(self) -> Iterator[dict]:
        return self.jsonl("users.jsonl")

    def groups_raw(self) -> Iterator[dict]:
        return self.jsonl("groups.jsonl")

    def lists_raw(self) -> Iterator[dict]:
        return self.jsonl("lists.jsonl")


# ============================================================================================
# Source
# ============================================================================================


def _media_sid(entry: Any, rel: str = "media.jsonl", n: int | None = None) -> str:
    """The submission a media index entry belongs to, as text (``str()`` of its value)."""
    if not isinstance(entry, dict):
        where = f" line {n}" if n is not None else ""
        raise ArchiveError(f"{rel}{where} is not a JSON object")
    return str(entry.get("submission_id"))


def minus_overlap(cursor: str, overlap_seconds: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` minus the overlap window (text in, text out)."""
    try:
        t = dt.datetime.strptime(cursor[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return cursor
    return (t - dt.timedelta(seconds=overlap_seconds)).strftime("%Y-%m-%d %H:%M:%S")


class ArchiveSource:
    """Replay an archive as if it were the live service (offline, after the contract ended)."""

    def __init__(self, path: str | os.PathLike, *, forms: Sequence[str] | None = None,
                 mode: str = "full", overlap_seconds: int = 300, check_deletions: bool = False,
                 **_ignored: Any):
        if mode == "unread":
            raise ConfigError("an archive has no server read markers: use --incremental cursor or full")
        self.reader = ArchiveReader(path)
        self.forms = list(forms) if forms else None
        self.mode = mode
        self.overlap = overlap_seconds
        #: the archive's ids are a form's complete listing: given to sinks in full mode, or with
        #: ``check_deletions`` (``exporter.deletions``)
        self.check_deletions = check_deletions
        self.description = f"archive {self.reader.path}"
        if self.forms:
            for fid in self.forms:
                if not self.reader.has_form(fid):
                    raise NotFoundError(f"unknown form id {fid!r} (not in archive {self.reader.path})")

    @property
    def expected_submissions(self) -> int | None:
        """How many submissions a full replay yields (for progress bars), when the manifest says."""
        if self.forms or self.mode != "full":
            return None
        return (self.reader.manifest.get("counts") or {}).get("submissions")

    def form_ids(self) -> list[str]:
        if self.forms:
            return self.forms
        return [str(f["id"]) for f in self.reader.forms_index()]

    @property
    def lists_ids(self) -> bool:
        """Whether this run gives sinks each form's complete id listing (``exporter.deletions``)."""
        return self.mode == "full" or self.check_deletions

    def listing(self, form_id: str) -> frozenset[str]:
        """A form's ids (the archive's are its complete listing), for the deletions check made
        before anything is written."""
        return frozenset(submission_id(raw) for raw in self.reader.submissions_raw(form_id))

    def form_weight(self, form_id: str) -> int:
        """A size hint for scheduling forms on parallel workers: the submissions file's size."""
        return self.reader.size(f"{form_dir(form_id)}/submissions.jsonl") or 0

    def records(self, state: dict[str, str | None] | None = None, *, account: bool = True,
                forms: Iterable[str] | None = None) -> Iterator:
        """The account's records in order. ``account=False`` leaves out the account, users, groups
        and lists; ``forms`` replaces the form ids (parallel workers pull theirs from a queue)."""
        state = state or {}
        if account:
            acc = self.reader.account()
            yield Account(source=self.description, timezone=acc.get("timezone"),
                          exported_at=self.reader.manifest.get("exported_at"), raw=acc,
                          form_ids=None if self.forms else tuple(self.form_ids()))
            for u in self.reader.users_raw():
                yield parse_user(u)
            for g in self.reader.groups_raw():
                yield parse_group(g)
            for lst in self.reader.lists_raw():
                yield parse_list(lst)
        for f in self.form_ids() if forms is None else forms:
            part = f if isinstance(f, FormPart) else FormPart(f)
            yield from self._form_records(part.form_id, state.get(part.form_id), part)

    def _form_records(self, fid: str, cursor: str | None, part: FormPart | None = None) -> Iterator:
        form = parse_form(self.reader.form_raw(fid))
        yield form
        since = minus_overlap(cursor, self.overlap) if (cursor and self.mode == "cursor") else None
        # media index, grouped per submission; streamed alongside submissions (same order)
        media_rel = f"{form_dir(fid)}/media.jsonl"
        media_iter = self.reader.media_index(fid)
        pending_media: dict | None = next(media_iter, None)
        max_time = cursor
        # a share of a form (parallel workers) does not see the whole form: no listing then
        listed: set[str] | None = (set() if (self.mode == "full" or self.check_deletions)
                                   and (part is None or part.count <= 1) else None)
        for position, raw in enumerate(self.reader.submissions_raw(fid)):
            if part is not None and not part.takes(position):  # another worker's share
                sid = submission_id(raw)
                while pending_media is not None and _media_sid(pending_media, media_rel) == sid:
                    pending_media = next(media_iter, None)
                continue
            sub = self._parse(form, raw)
            sid, ut = sub.id, sub.update_time
            if listed is not None:
                listed.add(sid)
            medias = None
            while pending_media is not None and _media_sid(pending_media, media_rel) == sid:
                if medias is None:
                    medias = []
                medias.append(pending_media)
                pending_media = next(media_iter, None)
            if since and ut and ut < since:
                continue
            if ut and (max_time is None or ut > max_time):
                max_time = ut
            yield from self._submission_records(sub, medias)
        yield Checkpoint(form.id, max_time, self.mode, listing=None if listed is None else frozenset(listed))

    @staticmethod
    def _parse(form: Form, raw: Any) -> Submission:
        try:
            return parse_submission(form, raw)
        except BadAnswerError as e:
            raise ArchiveError(e.message, context=e.context) from None

    def _submission_records(self, sub: Submission, medias: list | None) -> Iterator[Submission | Media]:
        """A submission and the ``Media`` of each reference it makes that its index entries
        (``medias``) hold, in the order of its references."""
        yield sub
        if not medias:
            return
        by_name = {}
        for m in medias:
            try:
                by_name[(m.get("subform"), m.get("row"), m.get("field"), m.get("name"))] = m
            except TypeError:  # a list or an object where a name or a row belongs: no reference names it
                continue
        for ref in sub.media:
            m = by_name.get((ref.subform, ref.row, ref.field, ref.name))
            if m is None:
                continue  # referenced by the submission but never downloaded (missing on the server)
            rel = m["path"]
            yield Media(ref, m.get("content_type") or "application/octet-stream",
                        (lambda rel=rel: self.reader.open(rel)), size=m.get("size"), sha256=m.get("sha256"))

    def acknowledge(self, batch: Iterable) -> None:
        """Archives have no read markers: nothing to acknowledge."""

    def close(self) -> None:
        self.reader.close()


# ============================================================================================
# Sink
# ============================================================================================


class _HashingWriter:
    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.fh.write(data)


class ArchiveSink:
    """Write a full account snapshot. The archive is assembled under a temporary name and moved
    into place only when complete (manifest written last); a failed run leaves nothing."""

    capabilities = Capabilities(transactions=False, rename=True, streaming=True, checksum="sha256", as_served=True,
                                tested="archive round trip, verify, replay as a source")

    def __init__(self, path: str | os.PathLike, *, zip_output: bool | None = None):
        self.target = Path(path)
        self.zip = zip_output if zip_output is not None else self.target.suffix.lower() == ".zip"
        self.name = f"archive {self.target}"
        # every file's {sha256, size} goes to a temporary file as it is written, not to memory:
        # a 200k-submission account has ~400k files. Only the few non-media paths are remembered
        # (to catch a file written twice), and the media of the current submission (de-duplication).
        self._entries: IO[str] | None = None
        self._seen: set[str] = set()
        self._sub_media: dict[str, dict] = {}
        self.counts = {"forms": 0, "submissions": 0, "media": 0, "users": 0, "groups": 0, "lists": 0}
        self._streams: dict[str, tuple[IO, _HashingWriter]] = {}
        self._forms: dict[str, Form] = {}
        self._account: dict = {}
        self._exported_at: str | None = None

    # ---- low level -------------------------------------------------------------------------
    def open(self, ctx: RunContext) -> None:
        try:
            self._open_files()
        except OSError as e:
            if self._tmp is not None:
                self._abort()
            raise SinkError(os_error_text(e, f"write the archive {self.target}")) from None

    def _open_files(self) -> None:
        self._tmp = None
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.zip:
            fd, self._tmp = tempfile.mkstemp(prefix="." + self.target.name + ".", suffix=".partial",
                                             dir=self.target.parent)
            os.fchmod(fd, FILE_MODE)
            os.close(fd)
            self._zf = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        else:
            self._tmp = tempfile.mkdtemp(prefix="." + self.target.name + ".", suffix=".partial",
                                         dir=self.target.parent)
        self._exported_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._entries = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.target.parent)

    def _record(self, rel: str, sha256: str, size: int, *, media: bool = False) -> None:
        if not media:
            self._seen.add(rel)
        self._entries.write(_entry_line(rel, {"sha256": sha256, "size": size}) + "\n")

    def _open_file(self, rel: str) -> IO[bytes]:
        if self.zip:
            return self._zf.open(rel, "w", force_zip64=True)
        p = Path(self._tmp) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return open(p, "wb")

    def _stream(self, rel: str) -> _HashingWriter:
        """A JSONL file kept open while its entity streams in. In a zip, members cannot be
        written side by side, so a growing JSONL goes to a temporary file on disk and is copied
        into the zip when it ends (bounded by disk, never by memory)."""
        if rel not in self._streams:
            if rel in self._seen:
                raise ArchiveError(f"{rel} written twice: records out of order")
            if self.zip:
                fh = tempfile.TemporaryFile(dir=self.target.parent)
            else:
                fh = self._open_file(rel)
            self._streams[rel] = (fh, _HashingWriter(fh))
        return self._streams[rel][1]

    def _end_stream(self, rel: str) -> None:
        fh, hw = self._streams.pop(rel)
        if self.zip:
            fh.seek(0)
            with self._zf.open(rel, "w", force_zip64=True) as member:
                shutil.copyfileobj(fh, member, 1 << 20)
        fh.close()
        self._record(rel, hw.h.hexdigest(), hw.size)

    def _end_form_streams(self) -> None:
        for rel in list(self._streams):
            if rel.startswith("forms/"):
                self._end_stream(rel)

    def _line(self, rel: str, obj: Any) -> None:
        self._stream(rel).write((dumps(obj) + "\n").encode("utf-8"))

    def _whole(self, rel: str, data: bytes) -> None:
        with self._open_file(rel) as fh:
            fh.write(data)
        self._record(rel, hashlib.sha256(data).hexdigest(), len(data))

    # ---- protocol --------------------------------------------------------------------------
    def write(self, batch: Sequence) -> None:
        for r in batch:
            k = r.kind
            if k == "account":
                self._account = dict(r.raw) if r.raw else {"source": r.source, "timezone": r.timezone}
            elif k == "user":
                self._line("users.jsonl", r.raw)
                self.counts["users"] += 1
            elif k == "group":
                self._line("groups.jsonl", r.raw)
                self.counts["groups"] += 1
            elif k == "list":
                self._line("lists.jsonl", r.raw)
                self.counts["lists"] += 1
            elif k == "form":
                self._end_form_streams()
                summary = {key: r.raw[key] for key in ("id", "name", "class", "update_time") if key in r.raw}
                self._line("forms.jsonl", summary or {"id": r.id, "name": r.name})
                self._whole(f"{form_dir(r.id)}/form.json", (dumps(r.raw) + "\n").encode("utf-8"))
                self.counts["forms"] += 1
            elif k == "submission":
                self._line(f"{form_dir(r.form_id)}/submissions.jsonl", r.raw)
                self.counts["submissions"] += 1
            elif k == "media":
                self._write_media(r)
            # checkpoints: an archive is a full snapshot, it keeps no incremental state

    def _write_media(self, m: Media) -> None:
        ref = m.ref
        rel = media_path(ref.form_id, ref.submission_id, ref.name)
        if self._sub_media and not next(iter(self._sub_media)).startswith(rel.rsplit("/", 1)[0] + "/"):
            self._sub_media.clear()  # a new submission: media paths never repeat across submissions
        if rel in self._sub_media:  # the same media used by two fields of a submission: stored once
            entry = self._sub_media[rel]
        else:
            with self._open_file(rel) as fh:
                hw = _HashingWriter(fh)
                with m.open() as src:
                    while chunk := src.read(1 << 16):
                        hw.write(chunk)
            entry = {"sha256": hw.h.hexdigest(), "size": hw.size}
            self._sub_media[rel] = entry
            self._record(rel, entry["sha256"], entry["size"], media=True)
            self.counts["media"] += 1
        self._line(f"{form_dir(ref.form_id)}/media.jsonl", {
            "submission_id": ref.submission_id, "field": ref.field, "subform": ref.subform,
            "row": ref.row, "name": ref.name, "path": rel, "content_type": m.content_type,
            "size": entry["size"], "sha256": entry["sha256"],
        })

    def commit(self) -> None:
        """A snapshot is only complete at the end; nothing to make durable per batch."""

    def close(self, ok: bool) -> None:
        if not ok:
            self._abort()
            return
        for rel in list(self._streams):
            self._end_stream(rel)
        head = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "account": self._account,
            "exported_at": self._exported_at,
            "counts": self.counts,
        }
        if self.zip:
            with self._zf.open(MANIFEST, "w") as fh:
                self._write_manifest(head, fh)
            self._zf.close()
            with open(self._tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self._tmp, self.target)
        else:
            with open(Path(self._tmp) / MANIFEST, "wb") as fh:
                self._write_manifest(head, fh)
            os.sync()  # every file of the archive is durable before it appears under its name
            if self.target.exists():
                old = Path(tempfile.mkdtemp(prefix="." + self.target.name + ".", suffix=".old",
                                            dir=self.target.parent))
                os.rename(self.target, old / "x")
                os.rename(self._tmp, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(self._tmp, self.target)

    def _write_manifest(self, head: dict, out: IO[bytes]) -> None:
        """The manifest, streamed: the head as indented JSON, then ``"files"`` last with one entry
        per line (in the order the files were written), so a reader can take the head without
        loading hundreds of thousands of entries, and ``verify`` can stream them."""
        text = json.dumps(head, ensure_ascii=False, indent=1)
        out.write((text[: text.rstrip().rfind("}")].rstrip() + ',\n "files": {\n').encode("utf-8"))
        self._entries.seek(0)
        first = True
        for line in self._entries:
            out.write((("  " if first else ",\n  ") + line.rstrip("\n")).encode("utf-8"))
            first = False
        out.write((b"\n" if not first else b"") + b" }\n}\n")
        self._entries.close()

    def _abort(self) -> None:
        if self._entries is not None:
            self._entries.close()
        for fh, _ in self._streams.values():
            with contextlib.suppress(Exception):
                fh.close()
        self._streams.clear()
        if self.zip:
            with contextlib.suppress(Exception):
                self._zf.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)


def create_sink(url: str, options: dict) -> ArchiveSink:
    path = url.split("://", 1)[1] if "://" in url else url
    if not path:
        raise ConfigError("archive:// needs a path, e.g. archive:///backups/account.zip")
    return ArchiveSink(path, zip_output=options.get("zip"))


# ============================================================================================
# Verify
# ============================================================================================


def verify(path: str | os.PathLike) -> list[str]:
    """Re-hash every file and check the counts. Returns the list of differences (empty = OK)."""
    reader = ArchiveReader(path)
    problems: list[str] = []
    try:
        present = set(reader.file_list()) - {MANIFEST}
        listed: set[str] = set()
        for rel, want in reader.iter_files():
            listed.add(rel)
            if rel not in present:
                problems.append(f"missing file: {rel}")
                continue
            h = hashlib.sha256()
            size = 0
            with reader.open(rel) as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
            if size != want.get("size"):
                problems.append(f"size mismatch: {rel} is {size} bytes, manifest says {want.get('size')}")
            if h.hexdigest() != want.get("sha256"):
                problems.append(f"checksum mismatch: {rel}")
        for rel in sorted(present - listed):
            if not Path(rel).name.startswith("."):
                problems.append(f"file not in manifest: {rel}")
        if not problems:
            counts = _count(reader)
            for key, want in (reader.manifest.get("counts") or {}).items():
                if counts.get(key) != want:
                    problems.append(f"count mismatch: {key} is {counts.get(key)}, manifest says {want}")
    finally:
        reader.close()
    return problems


def _count(reader: ArchiveReader) -> dict[str, int]:
    counts = {"users": sum(1 for _ in reader.users_raw()), "groups": sum(1 for _ in reader.groups_raw()),
              "lists": sum(1 for _ in reader.lists_raw())}
    forms = [str(f["id"]) for f in reader.forms_index()]
    counts["forms"] = len(forms)
    counts["submissions"] = sum(sum(1 for _ in reader.submissions_raw(f)) for f in forms)
    counts["media"] = len({m["path"] for f in forms for m in reader.media_index(f)})
    return counts
