"""The forms of a source, and ``--form`` values (an id or an exact name) resolved to form ids.

``list_forms`` asks the source only what it can tell cheaply: an archive knows each form's
submission count (the lines of its ``submissions.jsonl``, counted as a stream); the web service's
``GET /forms`` does not, and no submission is downloaded to count them (the count is None).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, NotFoundError

#: forms named in an "unknown form" message
SHOWN = 5


def list_forms(src: Any) -> list[dict]:
    """``[{id, name, class, submissions, update_time}]`` in the source's order."""
    from exporter.connectors.archive.layout import form_dir
    from exporter.connectors.archive.source import ArchiveSource

    if isinstance(src, ArchiveSource):  # an account archive
        reader = src.reader
        rows = []
        for f in reader.forms_index():
            fid = str(f.get("id"))
            rows.append(_row(f, _count_lines(reader, f"{form_dir(fid)}/submissions.jsonl")))
        return rows
    return [_row(f, None) for f in src.client.list_forms() if isinstance(f, dict) and f.get("id") not in (None, "")]


def _row(f: dict, submissions: int | None) -> dict:
    return {"id": str(f.get("id")), "name": str(f.get("name") or ""), "class": f.get("class") or "",
            "submissions": submissions, "update_time": f.get("update_time") or ""}


def _count_lines(reader: Any, rel: str) -> int | None:
    if not reader.exists(rel):
        return 0
    n = 0
    last = b"\n"
    with reader.open(rel) as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


COLUMNS = ("id", "name", "class", "submissions", "update_time")


def table(rows: list[dict]) -> list[str]:
    """``list_forms`` rows as aligned text lines under a header (counts right-aligned, an unknown
    count blank)."""
    cells = [COLUMNS] + [tuple("" if r[k] is None else str(r[k]) for k in COLUMNS) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return ["  ".join(v.rjust(w) if k == "submissions" else v.ljust(w)
                      for k, v, w in zip(COLUMNS, c, widths, strict=True)).rstrip() for c in cells]


def resolve(requested: Iterable[str], rows: list[dict], where: str = "") -> list[str]:
    """Form ids for ``requested`` values, each an id or an exact name (in that order). An unknown
    value (NotFoundError, as the sources raise) names a few forms and the nearest one; a name shared
    by several forms (ConfigError) lists their ids."""
    ids = {r["id"] for r in rows}
    by_name: dict[str, list[str]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r["id"])
    out: list[str] = []
    for value in requested:
        value = str(value).strip()
        if value in ids:
            fid = value
        elif len(by_name.get(value, ())) == 1:
            fid = by_name[value][0]
        elif value in by_name:
            raise ConfigError(f"--form {value!r} names {len(by_name[value])} forms: give one of their ids "
                              f"({', '.join(by_name[value])})")
        else:
            raise NotFoundError(unknown_form(value, rows), context=where or None)
        if fid not in out:
            out.append(fid)
    return out


def unknown_form(value: str, rows: list[dict]) -> str:
    if not rows:
        return f"unknown form {value!r}: the source has no forms"
    labels = {r["id"]: f"{r['id']} ({r['name']})" if r["name"] else r["id"] for r in rows}
    keys = {r["id"]: r["id"] for r in rows} | {r["name"].lower(): r["id"] for r in rows if r["name"]}
    near = difflib.get_close_matches(value.lower(), list(keys), n=1, cutoff=0.5)
    hint = f"did you mean {labels[keys[near[0]]]}? " if near else ""
    some = ", ".join(labels[r["id"]] for r in rows[:SHOWN]) + (f", ... ({len(rows)} in all)" if len(rows) > SHOWN else "")
    return f"unknown form {value!r}: {hint}forms: {some} (see `exporter forms`)"
