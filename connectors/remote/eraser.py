"""Erasing a person or submissions from the files a remote destination holds (``exporter forget``).

A remote keeps no store of current rows (its exports stream their files), so its files are read
back and written again without the person, each published whole or not at all (the remote sink's
``Transfer``):

* the whole remote is listed (``TreeRemote.walk``: local folders, SFTP, FTP/FTPS, S3, Azure,
  Dropbox, SharePoint); each form's ``submissions.jsonl`` (else ``submissions.csv``, else
  ``submissions.xml``, else ``submissions.xlsx``), and those of its ``runs/`` deltas, say which
  submissions are whose; a per-submission JSON file of a submission no aggregate lists (gone from
  the service) is read for its metadata;
* the submissions that go lose their lines in every JSONL and CSV aggregate of their form
  (``submissions.*``, ``subform-*.csv``, deltas included), their element in its XML documents
  (``erase_xml``) and their rows in its workbooks (``erase_xlsx``), their own files
  (``submissions/<id>.json``, ``reports/<id>.*``, ``media/<id>/``, ``documents/<id>/``,
  ``long-values/<id>-*.txt``); in the submissions that stay, the metadata naming the person is
  emptied in those same lines, elements and rows and in their JSON file, and their reports and the
  service's documents of them (which show it) are removed, with the touched forms' single-document
  reports ("derived files"). Lines and rows left alone keep their bytes (workbooks: their cells);
* the people files (``users.json``, ``groups.json``, ``users.csv``, ``groups.csv``,
  ``group_members.csv``, ``users.xlsx``, ``groups.xlsx``) are read back, each format's by itself
  (``erase_people``), and written again without the person by that format's writer (``-o``
  format options as given to the export; a CSV's delimiter and BOM as found in it); the person's
  ``long-values`` files (cells the XLSX writer cut) are removed;
* the upload manifest (``.exporter-manifest.json``, remotes without checksums) follows.

A remote that cannot list a tree or read a file back would be refused, in one line, before anything
changes (every built-in one can).

The plan (``.exporter-forget.json`` on the remote) is written before anything changes; a forget
stopped anywhere (SIGKILL too) is finished by the next one into that remote, which runs the plan it
finds first (every step can be done again: a file without the person filters to the same content).
The audit line goes to ``.exporter-erasures.jsonl`` on the remote, once. An export and a forget must
not write the same remote at once (nothing on a remote can stop them).
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.formats.tabular import USER_COLUMNS, long_value_path, user_long_name

from exporter.errors import ConfigError, SinkError
from exporter.fsutil import file_digest, owned_tempdir
from exporter.model import Account, Submission, extra_json
from exporter.privacy import personal
from exporter.privacy.erase_records import blank_roles, blank_user, without_member
from exporter.privacy.forget import Request, add, journaled

from .base import ReadableRemote, TreeRemote
from .erase_people import PEOPLE_FILES, csv_dialect, csv_people, json_people, people_format, xlsx_people
from .erase_xlsx import filter_xlsx
from .erase_xlsx import read_submissions as read_xlsx
from .erase_xml import filter_xml
from .erase_xml import read_submissions as read_xml
from .transfer import PARTIAL_SUFFIX_LEN

if TYPE_CHECKING:
    from .sink import RemoteSink

log = logging.getLogger("exporter.remote")

JOURNAL = ".exporter-forget.json"
AUDIT = ".exporter-erasures.jsonl"
PEOPLE = tuple(p for names in PEOPLE_FILES.values() for p in names)
_FORM_FILE = re.compile(r"forms/([^/]+)/(.+)")
_AGGREGATE = re.compile(r"(?:runs/[^/]+/)?(submissions\.(?:jsonl|csv|xml|xlsx)|subform-[^/]+\.csv)")
_OWN = re.compile(r"(submissions)/([^/]+)\.json|(reports)/([^/]+)\.(?:docx|pdf)|(media|documents)/([^/]+)/.+"
                  r"|(long-values)/([^/-]+)-[^/]+\.txt")


def _meta_of_row(header: list[str], row: list[str]) -> tuple[dict, dict]:
    """A submissions CSV row's metadata (``_``-prefixed columns) and ``extra``."""
    meta = {h[1:]: v for h, v in zip(header, row, strict=False) if h.startswith("_") and h != "_extra"}
    raw = dict(zip(header, row, strict=False)).get("_extra") or ""
    try:
        extra = json.loads(raw) if raw.startswith("{") else {}
    except ValueError:
        extra = {}
    return meta, extra


class RemoteEraser:
    """The ``Eraser`` of a remote destination (see ``exporter.privacy.forget``)."""

    def __init__(self, sink: RemoteSink):
        if not isinstance(sink.remote, TreeRemote) or not isinstance(sink.remote, ReadableRemote):
            raise ConfigError(f"{sink.name}: this kind of remote cannot erase data (yet): forget works on SFTP, FTP, "
                              "S3, Azure, Dropbox and SharePoint remotes, local folders, SQL databases and an account's backups")
        self.sink = sink
        self.name = sink.name
        self.transfer = sink.transfer

    # ---- the protocol ----------------------------------------------------------------------
    def plan(self, request: Request) -> dict[str, int]:
        with self._connected():
            return self._job(request)["counts"]

    def erase(self, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]:
        with self._connected():
            return journaled(self.name, request, audit_line, self._read_json(JOURNAL), self._job,
                             lambda job: self.transfer.write_small(JOURNAL, json.dumps(job, sort_keys=True).encode()),
                             self._run)

    # ---- access ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connected(self) -> Iterator[None]:
        # (the remote's files downloaded here hold the person: a killed forget's are removed by the next)
        self.scratch = owned_tempdir("exporter-forget-")
        try:
            self.transfer.connect()
            yield
        finally:
            self.transfer.close()
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _download(self, rel: str) -> Path | None:
        fd, name = tempfile.mkstemp(dir=self.scratch)
        os.close(fd)
        local = Path(name)
        with open(local, "wb") as fh:
            if not self.transfer.read(rel, fh):
                return None
        return local

    def _read_json(self, rel: str) -> Any:
        local = self._download(rel)
        if local is None:
            return None
        try:
            return json.loads(local.read_text("utf-8"))
        except ValueError as e:
            raise SinkError(f"{rel} on {self.name} is unreadable ({e}); remove it and run forget again") from None
        finally:
            local.unlink()

    # ---- planning --------------------------------------------------------------------------
    def _job(self, request: Request) -> dict:
        """What the request erases on the remote, and the counts; nothing is changed."""
        from exporter.formats.base import OutputDir

        listing = {rel: st.size for rel, st in self.transfer.walk("")}
        out = OutputDir(self.scratch / "names")
        uid, wanted = request.user_id, set(request.submission_ids)
        counts: dict[str, int] = {}
        forms: dict[str, dict[str, list[str]]] = {}  # form folder -> kind -> files in it
        for rel in listing:
            m = _FORM_FILE.fullmatch(rel)
            if m:
                forms.setdefault(m.group(1), {}).setdefault("all", []).append(m.group(2))
        doomed: dict[str, list[str]] = {}
        touched: dict[str, dict[str, list[str]]] = {}
        rewrite: list[str] = []
        remove: list[str] = []
        for fdir, found in sorted(forms.items()):
            files = found["all"]
            subs = self._submissions(fdir, files)
            own = self._own_files(files)
            comp = {self.sink.remote_path(out.safe(sid)): sid for sid in subs}
            for c, entries in own.items():  # a submission with files here that no aggregate lists (gone)
                if c in comp:
                    continue
                comp[c] = c
                if uid is None:
                    subs[c] = ({}, {}, 0)
                elif any(kind == "submissions" for _f, kind in entries):
                    subs[c] = (self._gone_meta(f"forms/{fdir}/submissions/{c}.json"), {}, 0)
                else:
                    log.warning("%s: files of a submission no aggregate lists remain in forms/%s; whose they are "
                                "cannot be told without its JSON file", self.name, fdir)
            for sid, (meta, extra, rows) in subs.items():
                roles = personal.roles_of(meta, uid) if uid is not None else []
                if (uid is None and sid in wanted) or (uid is not None and not request.only_personal
                                                       and ("user_id" in roles or "recipient_id" in roles)):
                    doomed.setdefault(fdir, []).append(sid)
                    add(counts, "subform_rows", rows)
                elif roles:
                    touched.setdefault(fdir, {})[sid] = roles
                    add(counts, "submission_personal_values",
                        blank_roles(Submission(fdir, sid, dict(meta), {}, {}, {}, (), extra=dict(extra)), roles)[1])
            gone, kept = set(doomed.get(fdir, ())), touched.get(fdir, {})
            if not gone and not kept:
                continue
            rewrite += [f"forms/{fdir}/{f}" for f in files if _AGGREGATE.fullmatch(f)]
            for c, entries in own.items():
                sid = comp.get(c, c)
                for f, kind in entries:
                    if sid in gone:
                        add(counts, {"submissions": "files", "reports": "files", "media": "media_files",
                                     "documents": "documents", "long-values": "files"}[kind], 1)
                        remove.append(f"forms/{fdir}/{f}")
                    elif sid in kept and kind in ("reports", "documents"):
                        add(counts, "derived_files" if kind == "reports" else "documents", 1)
                        remove.append(f"forms/{fdir}/{f}")
                    elif sid in kept and kind == "submissions":
                        rewrite.append(f"forms/{fdir}/{f}")
            single = [f for f in files if re.fullmatch(r"(?:runs/[^/]+/)?[^/]+\.(?:docx|pdf)", f)]
            add(counts, "derived_files", len(single))
            remove += [f"forms/{fdir}/{f}" for f in single]
            remove += [f"forms/{fdir}/{f}" for f in files if f.endswith(".partial")]
        add(counts, "submissions", sum(map(len, doomed.values())))
        people = [p for p in PEOPLE if p in listing]
        if uid is not None:  # the person's cells the XLSX writer cut: their full text
            keys = personal.user_keys(personal.GROUPS) if request.only_personal else USER_COLUMNS
            remove += [rel for k in keys if (rel := long_value_path(out, "", user_long_name(uid, k))) in listing]
            # a killed export's upload of a people file (``users.json.<8 hex>.partial``): everyone, them too
            remove += [rel for rel in listing if rel.endswith(".partial") and rel[:-PARTIAL_SUFFIX_LEN] in PEOPLE]
        if uid is not None and people:
            self._count_people(request, people, counts)
        return {"request": request.as_doc(), "counts": counts, "doomed": doomed, "touched": touched,
                "rewrite": sorted(set(rewrite)), "remove": sorted(set(remove)), "people": people}

    def _submissions(self, fdir: str, files: list[str]) -> dict[str, tuple[dict, dict, int]]:
        """sid -> (metadata, extra, sub-form rows) of every submission the form's JSONL (else CSV)
        aggregates list, deltas included."""
        out: dict[str, tuple[dict, dict, int]] = {}
        def aggregates(name: str) -> list[str]:
            return [f for f in files if f.endswith(name) and _AGGREGATE.fullmatch(f)]

        for f in (aggregates("submissions.jsonl") or aggregates("submissions.csv") or aggregates("submissions.xml")
                  or aggregates("submissions.xlsx")):
            local = self._download(f"forms/{fdir}/{f}")
            if local is None:
                continue
            if f.endswith((".xml", ".xlsx")):
                read = read_xml if f.endswith(".xml") else read_xlsx
                out.update(read(local, f"forms/{fdir}/{f}"))
            elif f.endswith(".jsonl"):
                with open(local, encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            d = json.loads(line)
                            rows = sum(len(v) for v in (d.get("subforms") or {}).values() if isinstance(v, list))
                            out[str(d["id"])] = (d.get("meta") or {}, d.get("extra") or {}, rows)
            else:
                with self._csv_rows(local) as (header, rows_iter):
                    for row in rows_iter:
                        meta, extra = _meta_of_row(header, row)
                        sid = meta.pop("id", "")
                        if sid:
                            old = out.get(sid)
                            out[sid] = (meta, extra, old[2] if old else 0)
                subs_rows = self._subform_rows(fdir, files)
                out = {sid: (m, e, subs_rows.get(sid, 0)) for sid, (m, e, _n) in out.items()}
            local.unlink()
        return out

    def _subform_rows(self, fdir: str, files: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in files:
            if re.fullmatch(r"subform-[^/]+\.csv", f):
                local = self._download(f"forms/{fdir}/{f}")
                if local is None:
                    continue
                with self._csv_rows(local) as (header, rows):
                    i = header.index("_submission_id") if "_submission_id" in header else 0
                    for row in rows:
                        counts[row[i]] = counts.get(row[i], 0) + 1
                local.unlink()
        return counts

    @staticmethod
    def _own_files(files: list[str]) -> dict[str, list[tuple[str, str]]]:
        """A submission's own files, by the name its folder or file takes: [(path in the form, kind)]."""
        own: dict[str, list[tuple[str, str]]] = {}
        for f in files:
            m = _OWN.fullmatch(f)
            if m:
                kind = m.group(1) or m.group(3) or m.group(5) or m.group(7)
                name = m.group(2) or m.group(4) or m.group(6) or m.group(8)
                own.setdefault(name, []).append((f, kind))
        return own

    def _gone_meta(self, rel: str) -> dict:
        doc = self._read_json(rel)
        return (doc.get("meta") or {}) if isinstance(doc, dict) else {}

    def _count_people(self, request: Request, people: list[str], counts: dict[str, int]) -> None:
        fmt = next(f for f in PEOPLE_FILES if any(p in people for p in PEOPLE_FILES[f]))
        users, groups = self._people(fmt, people)[:2]
        for u in users:
            if u.id == request.user_id:
                add(counts, *(("user_personal_values", blank_user(u)[1]) if request.only_personal else ("users", 1)))
        if not request.only_personal and request.user_id is not None:
            for g in groups:
                add(counts, "group_memberships", without_member(g, request.user_id)[1])

    def _people(self, fmt: str, people: list[str]) -> tuple[list, list, dict]:
        """The users and groups the people files of format ``fmt`` hold (``erase_people``), and the
        options its writer writes them again with."""
        present = {p for p in PEOPLE_FILES[fmt] if p in people}
        if fmt == "json":
            return (*json_people(self._read_json, present), self.sink.options)
        files = {}
        for rel in sorted(present):
            local = self._download(rel)
            if local is not None:
                files[rel] = local
        try:
            return csv_people(files, self.sink.options) if fmt == "csv" else (*xlsx_people(files), self.sink.options)
        finally:
            for local in files.values():
                local.unlink()

    # ---- doing it --------------------------------------------------------------------------
    def _run(self, job: dict) -> str:
        written: dict[str, tuple[int, str]] = {}
        for rel in job["rewrite"]:
            got = self._rewrite(rel, job)
            if got is not None:
                written[rel] = got
        if job["request"]["user_id"] is not None and job["people"]:
            written.update(self._rewrite_people(job))
        for rel in job["remove"]:
            self.transfer.delete(rel)
        self._manifest(written, job["remove"])
        self._record(job["line"])
        self.transfer.delete(JOURNAL)
        return job["line"]

    def _publish(self, rel: str, local: Path) -> tuple[int, str]:
        size, sha = local.stat().st_size, file_digest(local)
        self.transfer.publish(local, rel, sha, size)
        return size, sha

    def _rewrite(self, rel: str, job: dict) -> tuple[int, str] | None:
        """One file again without the request's data; None when it is gone or unchanged."""
        m = _FORM_FILE.fullmatch(rel)
        if m is None:
            return None
        fdir, inner = m.group(1), m.group(2)
        gone = set(job["doomed"].get(fdir, ()))
        kept: dict[str, list[str]] = job["touched"].get(fdir, {})
        local = self._download(rel)
        if local is None:
            return None
        new = local.with_suffix(".new")
        if inner.endswith(".jsonl"):
            self._filter_jsonl(local, new, gone, kept)
        elif inner.endswith(".xml"):
            filter_xml(local, new, rel, gone, kept)
        elif inner.endswith(".xlsx"):
            filter_xlsx(local, new, rel, gone, kept)
        elif inner.endswith(".csv"):
            self._filter_csv(local, new, gone, kept)
        else:  # a kept submission's own JSON file
            doc = json.loads(local.read_text("utf-8"))
            _blank(doc, kept.get(str(doc.get("id")), []))
            from exporter.formats.json_writer import dumps

            new.write_text(dumps(doc, indent=2) + "\n", "utf-8", newline="\n")
        if file_digest(new) == file_digest(local):  # (streamed: an aggregate can be large)
            return None
        return self._publish(rel, new)

    @staticmethod
    def _filter_jsonl(src: Path, dst: Path, gone: set[str], kept: dict[str, list[str]]) -> None:
        from exporter.formats.json_writer import dumps

        with open(src, "rb") as fin, open(dst, "wb") as fout:
            for line in fin:
                if not line.strip():
                    fout.write(line)
                    continue
                d = json.loads(line)
                sid = str(d.get("id"))
                if sid in gone:
                    continue
                if sid in kept:
                    _blank(d, kept[sid])
                    line = (dumps(d) + "\n").encode("utf-8")
                fout.write(line)

    def _filter_csv(self, src: Path, dst: Path, gone: set[str], kept: dict[str, list[str]]) -> None:
        dialect = csv_dialect(src, self.sink.options)
        with self._csv_rows(src, dialect) as (header, rows), open(dst, "w", encoding="utf-8-sig" if dialect["csv_bom"] else
                                                          "utf-8", errors="backslashreplace", newline="") as fout:
            w = csv.writer(fout, delimiter=dialect["csv_delimiter"], quotechar='"', lineterminator="\r\n",
                           quoting=csv.QUOTE_MINIMAL, doublequote=True, strict=True)
            w.writerow(header)
            key = header.index("_submission_id") if "_submission_id" in header else header.index("_id")
            for row in rows:
                sid = row[key] if key < len(row) else ""
                if sid in gone:
                    continue
                if sid in kept and header[key] == "_id":
                    row = _blank_row(header, row, kept[sid])
                w.writerow(row)

    @contextlib.contextmanager
    def _csv_rows(self, path: Path, dialect: dict[str, Any] | None = None
                  ) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
        """The header and rows of a CSV file the exporter wrote (``dialect``: ``csv_dialect``'s, when
        the caller has it already)."""
        dialect = dialect or csv_dialect(path, self.sink.options)
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=dialect["csv_delimiter"], quotechar='"', strict=True)
            header = next(reader, [])
            yield header, reader

    def _rewrite_people(self, job: dict) -> dict[str, tuple[int, str]]:
        """The people files, each format's read back and written again by its writer without the person."""
        from exporter.formats.base import OutputDir, make_writer

        uid, only = job["request"]["user_id"], job["request"]["only_personal"]
        written = {}
        for fmt in PEOPLE_FILES:
            names = [p for p in job["people"] if people_format(p) == fmt]
            if not names:
                continue
            users, groups, options = self._people(fmt, job["people"])
            out = OutputDir(self.scratch / f"people-{fmt}")
            w = make_writer(fmt, out, options)
            for r in [Account(source=""), *(blank_user(u)[0] if u.id == uid else u for u in users if only or u.id != uid),
                      *(g if only else without_member(g, uid)[0] for g in groups)]:
                w.write(r)
            w.close(True)
            out.publish_all()
            for rel in names:
                local = out.root / rel
                if local.is_file():
                    written[rel] = self._publish(rel, local)
        return written

    def _manifest(self, written: dict[str, tuple[int, str]], removed: list[str]) -> None:
        """The upload manifest (remotes without checksums) names what is there now."""
        from .sink import MANIFEST_FILE, MANIFEST_FORMAT

        doc = self._read_json(MANIFEST_FILE)
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), dict):
            return
        files = doc["files"]
        for rel in removed:
            files.pop(rel, None)
        for rel, (size, sha) in written.items():
            if rel in files:
                files[rel] = {"size": size, "sha256": sha}
        doc["files"] = dict(sorted(files.items()))
        self.transfer.write_small(MANIFEST_FILE, (json.dumps(doc, ensure_ascii=False, indent=0) + "\n").encode())

    def _record(self, line: str) -> None:
        """The audit line, appended once to the remote's own record."""
        local = self._download(AUDIT)
        text = local.read_text("utf-8") if local is not None else ""
        erasure_id = json.loads(line)["erasure_id"]
        for old in text.splitlines():
            with contextlib.suppress(ValueError):
                if json.loads(old).get("erasure_id") == erasure_id:
                    return
        self.transfer.write_small(AUDIT, (text + line + "\n").encode("utf-8"))


def _blank(doc: dict, roles: list[str]) -> None:
    """A submission's JSON document (aggregate line or own file) without the metadata naming the
    user in ``roles``."""
    meta, extra = doc.get("meta"), doc.get("extra")
    for role in roles:
        keys, prefix = personal.ROLES[role]
        if isinstance(meta, dict):
            for k in keys:
                if k in meta:
                    meta[k] = None
        if isinstance(extra, dict):
            for k in [k for k in extra if personal.is_submission_ref(k, prefix)]:
                del extra[k]


def _blank_row(header: list[str], row: list[str], roles: list[str]) -> list[str]:
    """A submissions CSV row without the metadata naming the user in ``roles``."""
    row = list(row)
    for role in roles:
        keys, prefix = personal.ROLES[role]
        for k in keys:
            if f"_{k}" in header:
                row[header.index(f"_{k}")] = ""
        if "_extra" in header:
            i = header.index("_extra")
            with contextlib.suppress(ValueError, IndexError):
                extra = json.loads(row[i]) if row[i].startswith("{") else {}
                extra = {k: v for k, v in extra.items() if not personal.is_submission_ref(k, prefix)}
                row[i] = extra_json(extra) or ""
    return row
