"""The files sink's end of run: the aggregates of each changed form built again from the store.

At the end of a successful run (``FilesSink.close``) every form the store marks dirty (changed by
this run, or left unpublished by an earlier one) gets its aggregate files (CSV, JSONL, XLSX, XML)
written again from its stored submissions, in a stable order, into temporary files renamed into
place; a file whose new bytes equal the old ones is left as it was. The lists of what the service
no longer holds are written here too: ``deleted.csv`` per form and ``deleted_forms.csv``.
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporter.connectors.files_store import FormStore
from exporter.formats.base import OutputDir, make_writer

from exporter.errors import ConfigError, FormatError, SinkError, os_error_text
from exporter.model import Account, Form, Record

log = logging.getLogger("exporter.files")


def feed(writer: Any, record: Record) -> None:
    """Give ``record`` to a format writer; a disk error becomes a ``SinkError`` naming its folder."""
    try:
        writer.write(record)
    except (SinkError, FormatError, ConfigError):
        raise
    except OSError as e:
        raise SinkError(os_error_text(e, f"write the {writer.key} files in {writer.out.root}")) from None


def publish_current(root: Path, store: FormStore, *, run_id: str, formats: Sequence[str], options: dict,
                    account: Account | None, max_name_bytes: int) -> None:
    """Build again, from the store, the aggregates of every form marked dirty, one form at a
    time: written to temporary files, renamed into place (an unchanged file is left as it is),
    then the form is marked clean."""
    out = OutputDir(root, run_id=run_id, incremental=False, max_name_bytes=max_name_bytes,
                    track_published=True, keep_unchanged=True)
    store.mark_missing(root)  # a file removed by hand is written again
    for fid in store.dirty_forms():
        out.published.clear()
        writers = [make_writer(key, out, options, records=False) for key in formats]
        ok = False
        try:
            form = store.form(fid)
            for w in writers:
                if account is not None:
                    feed(w, account)
                feed(w, form)
            n = 0
            for sub in store.submissions(fid):
                n += 1
                for w in writers:
                    feed(w, sub)
            for w in writers:
                w.close(True)
            ok = True
        finally:
            if not ok:
                for w in writers:
                    w.close(False)
                out.discard_all()
        write_deleted(out, form, store.deleted(fid))
        files = out.pending_relpaths()
        out.publish_all()
        store.mark_clean(fid, [p.as_posix() for p in [*files, *out.published]])
        log.info("form %s: aggregates rebuilt from %d stored submissions", fid, n)


def write_deleted(out: OutputDir, form: Form, rows: list[tuple[str, str]]) -> None:
    """``deleted.csv`` in the form folder: the submissions gone from the service (id, when
    this destination saw them gone); written when there are some or there were."""
    rel = f"{out.form_dir(form)}/deleted.csv"
    if not rows and not (out.root / rel).exists():
        return
    fh = out.pending(rel)
    w = csv.writer(fh, lineterminator="\r\n")
    w.writerow(["submission_id", "deleted_at"])
    w.writerows(rows)


def write_forms_gone(out: OutputDir, store: FormStore, account: Account | None) -> None:
    """``deleted_forms.csv``: the forms this folder holds that the service no longer lists
    (their folders are kept as they are); written when there are some or there were."""
    if account is None or account.form_ids is None:
        return
    rel = "deleted_forms.csv"
    listed = set(account.form_ids)
    gone = [fid for fid in store.form_ids() if fid not in listed]
    if gone:
        log.warning("forms gone from the service, kept as they are: %s", ", ".join(gone))
    if not gone and not (out.root / rel).exists():
        return
    with out.atomic(rel, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(["form_id", "name"])
        w.writerows([fid, store.form(fid).name] for fid in gone)
