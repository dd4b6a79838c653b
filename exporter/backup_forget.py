"""``exporter forget`` over an account's backups (``exporter.backups``): each backup that holds the
person is rewritten without them, verified, re-encrypted, stored under a new name, and swapped in
the index; the old one is removed only after.

A backup is an ``Eraser`` (``exporter.privacy.forget``) of its own, named after it:

* ``plan``: download, check its sha256, decrypt (the identity is needed: the backups are encrypted
  to public keys), verify every file, and count what the request takes out of it
  (``exporter.privacy.archive_erase``), streaming the archive's records; nothing changes;
* ``erase``: the same, writing the records left through the archive sink into a new zip (the
  archive package: its own source, sink and ``verify``), which is verified (every file re-hashed,
  the counts recounted), encrypted to the recipients the backup was made for (its index entry
  keeps them), published on the backup's destination (whole or not at all) and checked there as a
  new backup is. Then, in this order: the index entry is replaced (same id and creation time, new
  name, sizes and hashes, ``erased`` noting when), the old file is removed from the destination,
  and the audit line is appended to ``<state_dir>/<account>/erasures.jsonl``.

Before the upload, a journal (``<state_dir>/<account>/forget-backups.json``) names the old and the
new file. A forget stopped at any point (SIGKILL too) leaves the index naming a complete, verified
backup, old or new, and the next ``forget --apply`` on the account (``recover``) first either
removes what the stopped one uploaded (the index still names the old one, which the request then
rewrites again) or finishes it (the index names the new one: the old file is removed and the audit
line written). The account's lock is held by the caller throughout, so a backup, a prune or a
verify never runs meanwhile.

Disk: the spool (``<state_dir>/<account>/spool``) holds one backup's encrypted and plain copies
and the rewritten ones at most; memory stays flat (records and media are streamed).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .agecrypt import encrypt_file, parse_recipients
from .backups import SUFFIX, check_stored, fetch, load_index, new_spool, save_index, transfer_for
from .errors import ArchiveError, SinkError, os_error_text
from .fsutil import atomic_write
from .locks import account_dir
from .privacy.archive_erase import count_erasure, rewrite_archive
from .privacy.forget import Request, append_lines

log = logging.getLogger("exporter.backups")

JOURNAL = "forget-backups.json"
AUDIT = "erasures.jsonl"


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the journal --------------------------------------------------------------------------------
def _journal(state_dir: str | os.PathLike, account: str) -> Path:
    return account_dir(state_dir, account) / JOURNAL


def _write_journal(path: Path, job: dict | None) -> None:
    try:
        if job is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        with atomic_write(path, "w", encoding="utf-8") as fh:
            json.dump(job, fh, sort_keys=True)
    except OSError as e:
        raise SinkError(os_error_text(e, f"write {path}")) from None


def _record(state_dir: str | os.PathLike, account: str, line: str) -> None:
    """The audit line, appended once to the account's record."""
    path = account_dir(state_dir, account) / AUDIT
    doc = json.loads(line)
    key = (doc["erasure_id"], doc["destination"])
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for old in fh:
                with contextlib.suppress(ValueError):
                    d = json.loads(old)
                    if (d.get("erasure_id"), d.get("destination")) == key:
                        return
    append_lines(path, [line])


def _remove_stored(job: dict, names: list[str]) -> None:
    transfer = transfer_for(job["destination"], job.get("options") or {})
    try:
        transfer.connect()
        for name in names:
            transfer.delete(name)
    finally:
        transfer.close()


def recover(state_dir: str | os.PathLike, account: str) -> str | None:
    """Finish or undo what a stopped ``forget`` left (see the module docstring); what was done.
    The caller holds the account's lock."""
    path = _journal(state_dir, account)
    if not path.is_file():
        return None
    try:
        job = json.loads(path.read_text("utf-8"))
    except ValueError as e:
        raise SinkError(f"{path} is unreadable ({e}); check the backups with `exporter backups verify --backup all`, "
                        "then remove it") from None
    done = _settle(state_dir, account, job)
    log.warning("backups of account %s: %s (a forget had been stopped)", account, done)
    return done


def _settle(state_dir: str | os.PathLike, account: str, job: dict) -> str:
    """Finish a rewrite the index already names, or remove what one that it does not name
    uploaded; then the journal goes."""
    names = {e["name"] for e in load_index(state_dir, account)}
    if job["new"] in names:  # swapped: the old file goes, the audit line is written
        _remove_stored(job, [job["old"]])
        _record(state_dir, account, job["line"])
        done = f"finished the rewrite of backup {job['old']} into {job['new']}"
    else:  # not swapped: what was uploaded goes; the old backup stays listed and is rewritten again
        _remove_stored(job, [job["new"], job["partial"]])
        done = f"undid the unfinished rewrite of backup {job['old']}"
    _write_journal(_journal(state_dir, account), None)
    return done


# ---- one backup, an Eraser ----------------------------------------------------------------------
class BackupEraser:
    """The ``Eraser`` of one backup of an account (see the module docstring)."""

    def __init__(self, state_dir: str | os.PathLike, account: str, entry: dict, identities: list[Any]):
        self.state_dir, self.account, self.entry, self.identities = state_dir, account, entry, identities
        self.name = f"backup {entry['name']} (account {account})"
        self._planned: dict[str, int] | None = None

    def fetched(self, spool: Path) -> Path:
        """The backup downloaded, checked, decrypted and verified into ``spool``."""
        plain, problems = fetch(self.entry, self.identities, spool)
        if plain is None:
            raise ArchiveError(f"{self.name} does not verify ({'; '.join(problems[:3])}): restore it from a copy, or "
                               "remove it (exporter backups prune) before forget")
        return plain

    def plan(self, request: Request) -> dict[str, int]:
        spool = new_spool(Path(self.state_dir), self.account)
        try:
            self._planned = count_erasure(self.fetched(spool), request)
            return self._planned
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def erase(self, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]:
        if self._planned == {}:  # planned and holding nothing of the request: left as it is
            return []
        spool = new_spool(Path(self.state_dir), self.account)
        try:
            return self._erase(spool, request, audit_line)
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def _erase(self, spool: Path, request: Request, audit_line: Callable[[dict[str, int]], str]) -> list[str]:
        from .connectors.archive.reader import ArchiveReader

        old = self.entry
        plain = self.fetched(spool)
        new_plain = spool / "rewritten.zip"
        counts = rewrite_archive(plain, new_plain, request)
        plain.unlink()
        if not counts:
            return []
        line = audit_line(counts)
        erasure_id = json.loads(line)["erasure_id"]
        name = f"{self.account}-{old['id']}-e{erasure_id}{SUFFIX}"
        reader = ArchiveReader(new_plain)
        try:
            manifest_counts, files = dict(reader.manifest.get("counts") or {}), sum(1 for _ in reader.iter_files())
        finally:
            reader.close()
        sealed = spool / name
        plain_digest, sealed_digest = encrypt_file(new_plain, sealed, parse_recipients(old["recipients"]))
        new_plain.unlink()
        transfer = transfer_for(old["destination"], old.get("options") or {})
        journal = _journal(self.state_dir, self.account)
        job = {"old": old["name"], "new": name, "line": line, "destination": old["destination"],
               "options": old.get("options") or {}, "partial": transfer.partial_name(name, sealed_digest.sha256)}
        _write_journal(journal, job)
        try:
            transfer.connect()
            transfer.publish(sealed, name, sealed_digest.sha256, sealed_digest.size)
            checked = check_stored(transfer, name, sealed, sealed_digest)
        finally:
            transfer.close()
        entry = {**old, "name": name, "size": sealed_digest.size, "sha256": sealed_digest.sha256,
                 "archive": {"size": plain_digest.size, "sha256": plain_digest.sha256, "files": files,
                             "counts": manifest_counts},
                 "verified": True, "verified_at": _iso_now(), "checked_by": checked,
                 "erased": [*old.get("erased", []), {"erasure_id": erasure_id, "at": _iso_now()}]}
        entry.pop("problems", None)
        entries = [entry if e["name"] == old["name"] else e for e in load_index(self.state_dir, self.account)]
        save_index(self.state_dir, self.account, entries)
        self.entry = entry
        _settle(self.state_dir, self.account, job)  # the old file goes, then the audit line; the journal last
        log.info("backup %s rewritten as %s without the erased data", old["name"], name)
        return [line]


def gone_from_service(state_dir: str | os.PathLike, account: str, identities: list[Any]) -> list[str]:
    """The submissions an older backup holds that the newest verified one no longer has: deleted
    in the service since (each backup is a full snapshot). Every backup is downloaded, checked and
    decrypted; only ids are kept. The caller holds the lock."""
    from .backups import find
    from .connectors.archive.reader import ArchiveReader
    from .records import submission_id

    entries = load_index(state_dir, account)
    if not entries:
        return []
    newest = find(entries, "latest")[0]
    ordered = [newest, *(e for e in entries if e["name"] != newest["name"])]
    now: set[str] = set()
    gone: set[str] = set()
    for i, entry in enumerate(ordered):
        spool = new_spool(Path(state_dir), account)
        try:
            plain = BackupEraser(state_dir, account, entry, identities).fetched(spool)
            reader = ArchiveReader(plain)
            try:
                for form in reader.forms_index():
                    for raw in reader.submissions_raw(str(form["id"])):
                        sid = submission_id(raw)
                        if sid is not None:
                            (now if i == 0 else gone).add(sid)
            finally:
                reader.close()
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        gone -= now
    return sorted(gone)


def backup_erasers(state_dir: str | os.PathLike, account: str, identities: list[Any]) -> list[BackupEraser]:
    """One eraser per backup the account's index lists, oldest first. The caller holds the lock."""
    return [BackupEraser(state_dir, account, e, identities) for e in load_index(state_dir, account)]
