"""Erasing a person or submissions from a files destination (``exporter forget``).

Everything is found in the folder's store (``.exporter/store.sqlite``: each form's submissions,
the users and groups, the formats and options the files were made with). An erasure:

1. is planned from the store, and written down (``.exporter/forget.json``: what goes, which
   aggregate files each touched form had) before anything changes;
2. removes the per-submission files of the submissions that go (``submissions/<id>.json``,
   ``reports/<id>.*``, ``media/<id>/``, ``documents/<id>/``), including those of submissions gone
   from the service whose JSON file names the user; the files that hold a touched form's
   submissions but cannot be written again without the stream (single-document reports, ``runs/``
   deltas, the service's documents of a kept submission that names the user) are removed;
3. goes through the files sink itself (``FilesSink``): the users and groups without the person,
   the changed submissions (their own files written again), the submissions that go taken out of
   the store (``FormStore.erase``, with SQLite's ``secure_delete``), one commit; then the sink
   publishes the people files and rebuilds the touched forms' aggregates atomically, exactly as
   an export would have written them without the person;
4. removes the aggregate files the rebuild no longer makes (``long-values`` of cells that went);
5. appends the audit line to ``.exporter/erasures.jsonl`` (once) and removes the plan.

Each step can be done again: a forget stopped anywhere (SIGKILL too) is finished by the next one
into the folder, which first completes the plan it finds. An export and a forget never run in the
same folder at once (the sink's claim).
"""
from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from exporter.connectors.files import FilesSink
from exporter.connectors.files_store import STORE_PATH, FormStore
from exporter.formats.base import OutputDir
from exporter.formats.tabular import USER_COLUMNS, long_value_path, user_long_name

from exporter.errors import ConfigError, SinkError, os_error_text
from exporter.fsutil import atomic_write, live_claim, remove_path
from exporter.model import Account, Media
from exporter.privacy import personal
from exporter.privacy.erase_records import blank_roles, blank_user, without_member
from exporter.privacy.forget import Request, add, append_lines, journaled
from exporter.sinks import RunContext

log = logging.getLogger("exporter.files")

JOURNAL = ".exporter/forget.json"
AUDIT = ".exporter/erasures.jsonl"
#: report formats that also have a one-document-per-form mode (its option)
_SINGLE = {"docx": "docx_single", "pdf": "pdf_single"}


class FilesEraser:
    """The ``Eraser`` of a files destination (see ``exporter.privacy.forget``)."""

    def __init__(self, sink: FilesSink):
        self.root = Path(sink.root)
        self.name = sink.name

    # ---- the protocol ----------------------------------------------------------------------
    def plan(self, request: Request) -> dict[str, int]:
        return self._job(request)["counts"]

    def erase(self, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]:
        other = live_claim(self.root, self.root / JOURNAL)  # (the sink claims the folder for its step)
        if other is not None:
            raise SinkError(f"an export (process {other.partition('.')[0]}) is writing into {self.root}; "
                            "run forget once it is done")
        return journaled(self.name, request, audit_line, self._pending(), self._job, self._save, self._run)

    def _save(self, job: dict) -> None:
        try:
            with atomic_write(self.root / JOURNAL, "w", encoding="utf-8") as fh:
                json.dump(job, fh, sort_keys=True)
        except OSError as e:
            raise SinkError(os_error_text(e, f"write {self.root / JOURNAL}")) from None

    # ---- planning --------------------------------------------------------------------------
    def _store(self) -> FormStore:
        path = self.root / STORE_PATH
        if not path.is_file():
            raise ConfigError(f"{self.name}: no {STORE_PATH} here: not a folder the files destination wrote (or "
                              "written by a version that kept no store)")
        return FormStore(path)

    @staticmethod
    def _settings(store: FormStore, name: str) -> dict:
        text = store.meta("settings")
        if text is None:
            raise ConfigError(f"{name}: exported by an earlier version, which did not record how its files were "
                              "made: export into it once with this version, then forget")
        return json.loads(text)

    def _pending(self) -> dict | None:
        p = self.root / JOURNAL
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text("utf-8"))
        except ValueError as e:
            raise SinkError(f"{p} is unreadable ({e}); remove it and run forget again") from None

    def _job(self, request: Request) -> dict:
        """What the request erases here (ids, files), and the counts; nothing is changed."""
        store = self._store()
        try:
            settings = self._settings(store, self.name)
            out = OutputDir(self.root)
            uid, wanted = request.user_id, set(request.submission_ids)
            counts: dict[str, int] = {}
            doomed: dict[str, list[str]] = {}
            touched: dict[str, dict[str, list[str]]] = {}
            leftovers: list[list[str]] = []
            for fid in store.form_ids():
                for sub in store.submissions(fid):
                    if uid is None:
                        if sub.id in wanted:
                            doomed.setdefault(fid, []).append(sub.id)
                            add(counts, "subform_rows", sum(len(rows) for rows in sub.subforms.values()))
                        continue
                    roles = personal.roles_of(sub.meta, uid)
                    if not roles:
                        continue
                    if not request.only_personal and ("user_id" in roles or "recipient_id" in roles):
                        doomed.setdefault(fid, []).append(sub.id)
                        add(counts, "subform_rows", sum(len(rows) for rows in sub.subforms.values()))
                    else:
                        touched.setdefault(fid, {})[sub.id] = roles
                        add(counts, "submission_personal_values", blank_roles(sub, roles)[1])
                leftovers += [[fid, sid] for sid in self._gone_submissions(store, out, fid, request)]
            add(counts, "submissions", sum(map(len, doomed.values())) + len(leftovers))
            # the account goes through the sink again (what the aggregates say of it), and with it
            # the people files, written again from the store
            people = store.meta("account") is not None
            if people and store.meta("people") is None:
                raise ConfigError(f"{self.name}: exported by an earlier version, which did not keep its users "
                                  "and groups in its store: export into it once with this version, then forget")
            if people and uid is not None:
                for p in store.people():
                    if p.kind == "user" and p.id == uid:
                        if request.only_personal:
                            add(counts, "user_personal_values", blank_user(p)[1])
                        else:
                            add(counts, "users", 1)
                    elif p.kind == "group" and not request.only_personal:
                        add(counts, "group_memberships", without_member(p, uid)[1])
            forms = sorted(set(doomed) | set(touched) | {f for f, _ in leftovers})
            names = {fid: store.form_name(fid) for fid in forms}
            gone_files = [str(p) for fid, sid in [*((f, s) for f, ids in doomed.items() for s in ids), *leftovers]
                          for p in self._own_files(out, fid, names[fid], sid, counts)]
            rebuilt = _formats(settings)
            derived = [str(p) for fid in forms for p in self._derived(out, fid, names[fid], touched.get(fid, {}),
                                                                       rebuilt, counts)]
            old_files = {fid: json.loads(store.meta(f"files {fid}") or "[]") for fid in forms}
        finally:
            store.close()
        return {"request": request.as_doc(), "counts": counts, "doomed": doomed, "touched": touched,
                "people": people, "remove": gone_files + derived, "old_files": old_files}

    def _gone_submissions(self, store: FormStore, out: OutputDir, fid: str, request: Request) -> Iterator[str]:
        """Submissions gone from the service whose own files are still here (``--deletions
        soft``) and that the request names: by id, or by the metadata of their JSON file."""
        form_dir = self.root / out.form_dir(fid, store.form_name(fid))
        for sid, _when in store.deleted(fid):
            if request.user_id is None:
                if sid in request.submission_ids and any(self._own_files(out, fid, store.form_name(fid), sid, {})):
                    yield sid
                continue
            doc = form_dir / "submissions" / f"{out.safe(sid)}.json"
            try:
                meta = json.loads(doc.read_text("utf-8")).get("meta") or {}
            except (OSError, ValueError, AttributeError):
                if any(self._own_files(out, fid, store.form_name(fid), sid, {})):
                    log.warning("%s: form %s submission %s is gone from the service and its files remain; whose it "
                                "is cannot be told without its JSON file (export with --deletions hard removes them)",
                                self.name, fid, sid)
                continue
            if personal.roles_of(meta, request.user_id):
                yield sid

    def _own_files(self, out: OutputDir, fid: str, name: str | None, sid: str, counts: dict) -> list[Path]:
        """A submission's own files here (JSON, reports, its media folder), counted."""
        d = self.root / out.form_dir(fid, name)
        safe = out.safe(sid)
        found = [p for p in [d / "submissions" / f"{safe}.json",
                             *(d / "reports" / f"{safe}.{ext}" for ext in ("docx", "pdf"))] if p.is_file()]
        add(counts, "files", len(found))
        for folder, kind in ((d / "media" / safe, "media_files"), (d / "documents" / safe, "documents")):
            if folder.is_dir():
                add(counts, kind, sum(1 for p in folder.rglob("*") if p.is_file()))
                found.append(folder)
        return found

    def _derived(self, out: OutputDir, fid: str, name: str | None, touched: dict, rebuilt: tuple,
                 counts: dict) -> list[Path]:
        """What holds a touched form's submissions and is not written again, counted: its
        single-document reports, its ``runs/`` deltas (the folder), and the reports of the kept
        submissions in a format the files are no longer made in."""
        d = self.root / out.form_dir(fid, name)
        found = [p for p in d.glob("*") if p.is_file() and p.suffix in (".docx", ".pdf")]
        for sid in touched:
            for ext in ("docx", "pdf"):
                p = d / "reports" / f"{out.safe(sid)}.{ext}"
                if ext not in rebuilt and p.is_file():
                    found.append(p)
        add(counts, "derived_files", len(found))
        for sid in touched:  # the service's documents of a kept submission still name the person
            docs = d / "documents" / out.safe(sid)
            if docs.is_dir():
                add(counts, "documents", sum(1 for p in docs.rglob("*") if p.is_file()))
                found.append(docs)
        if (d / "runs").is_dir():
            add(counts, "derived_files", sum(1 for p in (d / "runs").rglob("*") if p.is_file()))
            found.append(d / "runs")
        return found

    # ---- doing it --------------------------------------------------------------------------
    def _run(self, job: dict) -> str:
        for p in map(Path, job["remove"]):
            _remove(p)
        self._through_the_sink(job)
        self._remove_stale(job)
        self._record(job["line"])
        with contextlib.suppress(FileNotFoundError):
            (self.root / JOURNAL).unlink()
        return job["line"]

    def _through_the_sink(self, job: dict) -> None:
        store = self._store()
        try:
            settings = self._settings(store, self.name)
            batch = self._records(store, job)
        finally:
            store.close()
        options = {k: v for k, v in settings.get("options", {}).items() if k not in _SINGLE.values()}
        sink = FilesSink(self.root, options)
        sink.open(RunContext(run_id="forget", source="exporter forget", formats=_formats(settings)))
        ok = False
        try:
            sink.write([])  # opens the store, in a transaction
            kept = sink.store
            if kept is None:
                raise SinkError("the store did not open", context=self.name)
            kept.db.execute("PRAGMA secure_delete=ON")  # erased rows leave no bytes behind
            sink.write(batch)
            for fid, ids in job["doomed"].items():
                kept.erase(fid, ids)
            sink.commit()
            ok = True
        finally:
            sink.close(ok)

    def _records(self, store: FormStore, job: dict) -> list:
        """The records the sink is given: the account and its people without the person, then each
        touched form with its changed submissions and their media (from this folder)."""
        uid = job["request"]["user_id"]
        batch: list[Any] = []
        account = store.meta("account")
        if job["people"] and account is not None:
            source, timezone, exported_at = json.loads(account)
            batch.append(Account(source=source, timezone=timezone, exported_at=exported_at))
            for p in store.people():
                if p.kind == "user" and p.id == uid:
                    if job["request"]["only_personal"]:
                        batch.append(blank_user(p)[0])
                elif p.kind == "group" and not job["request"]["only_personal"]:
                    batch.append(without_member(p, uid)[0])
                else:
                    batch.append(p)
        out = OutputDir(self.root)
        for fid, subs in sorted(job["touched"].items()):
            form = store.form(fid)
            batch.append(form)
            for sub in store.submissions(fid):
                if sub.id not in subs:
                    continue
                batch.append(blank_roles(sub, subs[sub.id])[0])
                for ref in sub.media:
                    path = self.root / out.media_relpath(ref, form.name)
                    if path.is_file():
                        ctype = mimetypes.guess_type(ref.name)[0] or "application/octet-stream"
                        batch.append(Media.from_path(ref, ctype, str(path), size=path.stat().st_size))
        return batch

    def _remove_stale(self, job: dict) -> None:
        """Aggregate files a touched form had that its rebuild did not make again."""
        store = self._store()
        try:
            now = {fid: set(json.loads(store.meta(f"files {fid}") or "[]")) for fid in job["old_files"]}
        finally:
            store.close()
        for fid, old in job["old_files"].items():
            for rel in old:
                if rel not in now[fid]:
                    _remove(self.root / rel)
        uid = job["request"]["user_id"]
        if uid is not None:  # the person's cells a writer cut: their full text (every column when the row goes)
            out = OutputDir(self.root)
            keys = personal.user_keys(personal.GROUPS) if job["request"]["only_personal"] else USER_COLUMNS
            for k in keys:
                _remove(self.root / long_value_path(out, "", user_long_name(uid, k)))

    def _record(self, line: str) -> None:
        """The audit line, appended once to the folder's own record."""
        path = self.root / AUDIT
        erasure_id = json.loads(line)["erasure_id"]
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                for old in fh:
                    with contextlib.suppress(ValueError):
                        if json.loads(old).get("erasure_id") == erasure_id:
                            return
        append_lines(path, [line])


def _formats(settings: dict) -> tuple[str, ...]:
    """The formats written again: those of the files, but a report format in one-document-per-form
    mode (such documents are removed, not written again)."""
    options = settings.get("options", {})
    return tuple(f for f in settings.get("formats", ()) if not (f in _SINGLE and options.get(_SINGLE[f]) in
                                                               (True, "true", "yes", "on", "1", 1)))


def _remove(p: Path) -> None:
    try:
        remove_path(p)
    except OSError as e:
        raise SinkError(os_error_text(e, f"remove {p}")) from None
