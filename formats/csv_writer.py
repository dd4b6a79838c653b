"""CSV (RFC 4180, UTF-8): a table per form and per sub-form, users, groups, members, lists.

Files (relative to the output directory)::

    <aggregate dir>/submissions.csv                  metadata columns + one column per field
    <aggregate dir>/subform-<name>.csv               one row per sub-form row (_submission_id, _row_index)
    users.csv, groups.csv, group_members.csv         (group_id, user_id, role member|leader)
    lists.csv                                        one row per external list (with _extra)
    lists/<id>-<name>.txt                            the list's lines exactly as served
    list_items.csv                                   list_id, index, line, label/code per level and column

Cells: dates/times ISO 8601, numbers in plain notation with a ``.``, booleans ``true``/``false``,
geoloc ``lat,lon``, media as paths relative to the CSV file joined by ``"; "``; where a value did
not type, the original text. Records end with CRLF; fields holding the delimiter, a quote or a line
break are quoted. Text cells starting with ``= + - @``, tab or CR get a leading ``'`` (formula
injection guard, ``csv_formula_guard=False`` turns it off) unless they are only a phone or signed
number (``tabular.guard_formula``); typed numbers are never touched.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from collections.abc import Iterable
from typing import IO

from exporter.formats.base import FormatLimits, FormStreamWriter, OutputDir, submission_form
from exporter.formats.catalog import CSV
from exporter.formats.tabular import (
    GROUP_COLUMNS,
    LIST_COLUMNS,
    ROW_INDEX,
    USER_COLUMNS,
    Column,
    column_links,
    form_columns,
    group_cells,
    group_members,
    guard_formula,
    list_cells,
    list_item_cells,
    list_item_headers,
    row_cells,
    subform_columns,
    text_cell,
    user_cell,
)

from exporter.model import ExternalList, FieldDef, Form, Group, ListColumn, ListItem, Submission, User


class CsvFile:
    """One CSV file written row by row to a pending file of the output directory."""

    def __init__(self, out: OutputDir, relpath: str, header: Iterable[str], *, delimiter: str, bom: bool,
                 guard: bool):
        self.out, self.relpath, self.guard = out, relpath, guard
        raw = out.pending(relpath, "wb")
        # lone surrogates (possible in service strings) cannot be UTF-8: written visibly as \udXXX
        self.fh = io.TextIOWrapper(raw, encoding="utf-8-sig" if bom else "utf-8",
                                   errors="backslashreplace", newline="", write_through=False)
        self.writer = csv.writer(self.fh, delimiter=delimiter, quotechar='"', lineterminator="\r\n",
                                 quoting=csv.QUOTE_MINIMAL, doublequote=True, strict=True)
        self.rows = 0
        self.writer.writerow([self.text(h) for h in header])

    def text(self, value: str | None) -> str:
        if value is None:
            return ""
        return guard_formula(value) if self.guard else value

    def write(self, cells: list[tuple[str, bool]]) -> None:
        """``cells``: (text, is_free_text) pairs; only free text gets the formula guard."""
        self.writer.writerow([guard_formula(t) if (free and self.guard) else t for t, free in cells])
        self.rows += 1

    def write_text(self, values: Iterable[str | None]) -> None:
        self.writer.writerow([self.text(v) for v in values])
        self.rows += 1

    def finish(self) -> None:
        self.fh.flush()
        self.fh.detach()
        self.out.finish(self.relpath)

    def abandon(self) -> None:
        """Let go of the file without finishing it (the sink discards it)."""
        with contextlib.suppress(ValueError, OSError):
            self.fh.detach()


class CsvWriter(FormStreamWriter):
    key = CSV.key
    description = CSV.description
    limits = FormatLimits()

    def __init__(self, out: OutputDir, options: dict):
        self.out = out
        o = CSV.parse_options(options, strict=False)
        self.fmt = {"delimiter": o["csv_delimiter"], "bom": o["csv_bom"], "guard": o["csv_formula_guard"]}
        self._form: Form | None = None
        self._main: CsvFile | None = None
        self._main_cols: list[Column] = []
        self._subs: list[tuple[FieldDef, list[Column], CsvFile]] = []
        self._users: CsvFile | None = None
        self._groups: CsvFile | None = None
        self._members: CsvFile | None = None
        self._lists: CsvFile | None = None
        self._items_spool: IO | None = None  # list items, kept on disk until the widest is known
        self._items_shape = (0, 0)
        self._account_seen = False

    def _file(self, relpath: str, header) -> CsvFile:
        return CsvFile(self.out, relpath, header, **self.fmt)

    # ---- records (dispatched by FormStreamWriter.write) --------------------------------
    def _on_user(self, user: User) -> None:
        users, _groups, _members = self._open_people()
        users.write_text(_user_cells(user))

    def _on_group(self, group: Group) -> None:
        _users, groups, members = self._open_people()
        groups.write_text(group_cells(group))
        for gid, uid, role in group_members(group):
            members.write_text([gid, uid, role])

    def _open_people(self) -> tuple[CsvFile, CsvFile, CsvFile]:
        """The users, groups and group members files, opened with the first user or group."""
        if self._users is None or self._groups is None or self._members is None:
            self._users = self._file("users.csv", USER_COLUMNS)
            self._groups = self._file("groups.csv", GROUP_COLUMNS)
            self._members = self._file("group_members.csv", ("group_id", "user_id", "role"))
        return self._users, self._groups, self._members

    def _on_list(self, lst: ExternalList) -> None:
        if self._lists is None:
            self._lists = self._file("lists.csv", LIST_COLUMNS)
        self._lists.write_text([v if v is None or isinstance(v, str) else str(v) for v in list_cells(lst)])
        rel = "lists/" + self.out.safe(f"{lst.id}-{lst.name}") + ".txt"
        with self.out.atomic(rel, "wb") as fh:
            for line in lst.items:
                fh.write(line.encode("utf-8", "backslashreplace") + b"\n")
        if self._items_spool is None:
            self._items_spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        levels, cols = self._items_shape
        for item in lst.parsed_items():
            levels = max(levels, len(item.levels))
            cols = max(cols, *(len(lv) for lv in item.levels))
            self._items_spool.write(json.dumps([lst.id, item.index, item.line,
                                                [[[c.label, c.code] for c in lv] for lv in item.levels]]) + "\n")
        self._items_shape = (levels, cols)

    def _finish_list_items(self) -> None:
        if self._items_spool is None:
            return
        levels, cols = self._items_shape
        f = self._file("list_items.csv", ["list_id", "index", "line", *list_item_headers(levels, cols)])
        self._items_spool.seek(0)
        for line in self._items_spool:
            list_id, index, raw, lvls = json.loads(line)
            item = ListItem(index, raw, tuple(tuple(ListColumn(lb, cd) for lb, cd in lv) for lv in lvls))
            f.write_text([list_id, str(index), raw, *list_item_cells(item, levels, cols)])
        f.finish()
        self._items_spool.close()
        self._items_spool = None

    def _start_form(self, form: Form) -> None:
        self._form = form
        if not self.aggregates:
            return
        agg = self.out.aggregate_dir(form)
        self._main_cols = form_columns(form)
        self._main = self._file(f"{agg}/submissions.csv", [c.header for c in self._main_cols])
        self._subs = []
        for sf in form.subforms():
            cols = subform_columns(sf)
            rel = f"{agg}/" + self.out.safe(f"subform-{sf.name}.csv")
            self._subs.append((sf, cols, self._file(rel, [c.header for c in cols])))

    def _finish_form(self) -> None:
        if self._main is not None:
            self._main.finish()
            for _, _, f in self._subs:
                f.finish()
        self._main, self._subs, self._form = None, [], None

    def _cells(self, form: Form, sub: Submission, cols: list[Column], base: str, sf: FieldDef | None = None,
               row=None) -> list[tuple[str, bool]]:
        out = []
        for col, value, text in row_cells(cols, sub, row):
            if col.source == ROW_INDEX:
                out.append((str(value), False))
                continue
            out.append(text_cell(value, text, column_links(self.out, form, sub, col, value, base, sf, row)))
        return out

    def _write_submission(self, sub: Submission) -> None:
        form = submission_form(self._form, sub)
        if self._main is None:  # records only: a CSV holds no file of its own per submission
            return
        base = self.out.aggregate_dir(form)
        self._main.write(self._cells(form, sub, self._main_cols, base))
        for sf, cols, f in self._subs:
            for row in sub.subforms.get(sf.name, []):
                f.write(self._cells(form, sub, cols, base, sf, row))

    # ---- end (FormStreamWriter.close) ---------------------------------------------------
    def _abandon(self) -> None:
        if self._items_spool is not None:
            self._items_spool.close()
        for f in [self._main, self._users, self._groups, self._members, self._lists,
                  *(f for _, _, f in self._subs)]:
            if f is not None:
                f.abandon()

    def _finish_account(self) -> None:
        if self._account_seen:
            self._open_people()
        for f in (self._users, self._groups, self._members, self._lists):
            if f is not None:
                f.finish()
        self._finish_list_items()


def _user_cells(u) -> list[str | None]:
    out = []
    for k in USER_COLUMNS:
        v = user_cell(u, k)
        out.append(("true" if v else "false") if isinstance(v, bool) else v)
    return out
