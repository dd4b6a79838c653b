"""XLSX (openpyxl, write-only, streamed): a workbook per form with a sheet per sub-form, users,
groups and external lists.

Files (relative to the output directory)::

    <aggregate dir>/submissions.xlsx                 sheet "submissions" + one sheet per sub-form
    <aggregate dir>/long-values/<sid>-<field>.txt    full text of any cell over 32,767 characters
    users.xlsx, groups.xlsx (sheets groups, members), lists.xlsx (one row per list, with _extra),
    lists/<id>-<name>.xlsx (its items)

Cells are real Excel values: numbers, dates, times, date-times, booleans; text is stored as text
(never as a formula, so no formula guard is needed). Numbers with more than 15 significant digits
(more than Excel keeps) and dates before 1900-03-01 are written as text so no digit or day is lost.
Media cells show paths relative to the workbook and link to the file (to the submission's media
folder when a cell holds several). The header row is frozen, columns have widths by kind.

Limits: 1,048,576 rows per sheet (more continue on a sheet "<name> (2)"), 31-character sheet names
(unique, without ``[]:*?/\\``), 32,767 characters per cell (longer text goes whole to a side file,
the cell shows a marker with its path, linked). Characters XML 1.0 forbids (control characters,
lone surrogates) are shown as ``\\uXXXX``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from exporter.formats.base import FormatLimits, FormStreamWriter, OutputDir, submission_form
from exporter.formats.stable import DatedZip, Newest
from exporter.formats.tabular import (
    GROUP_COLUMNS,
    LIST_COLUMNS,
    META,
    ROW_INDEX,
    SUBMISSION_ID,
    USER_COLUMNS,
    Column,
    column_links,
    escape_forbidden,
    form_columns,
    group_cells,
    group_members,
    list_cells,
    list_item_cells,
    list_item_columns,
    list_item_headers,
    long_value_path,
    relative,
    row_cells,
    subform_columns,
    user_cell,
    user_long_name,
)
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from exporter.errors import FormatError
from exporter.model import FieldDef, Form, GeoPoint, Submission

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL = 32_767
EXCEL_MAX_SHEET_NAME = 31
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_LINKS = 65_530  # hyperlinks per worksheet
EXCEL_MAX_LINK = 2_079  # characters of a hyperlink target
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")
_EXCEL_MIN_DATE = dt.date(1900, 3, 1)  # before: Excel's 1900 leap-year bug, or not a date at all

_WIDTH = {"text": 30, "number": 14, "date": 12, "time": 10, "datetime": 20, "boolean": 9, "geoloc": 24,
          "media": 40, "choice": 24}
_BOLD = Font(bold=True)
_LINK = Font(color="0563C1", underline="single")


_META_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$")


def _meta_time(text: str) -> dt.datetime | None:
    """A served metadata time ("YYYY-MM-DD HH:MM:SS", no offset) as a date-time Excel can sort."""
    m = _META_TIME.match(text)
    if not m:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        when = dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return when if when.date() >= _EXCEL_MIN_DATE else None


_LINK_UNSAFE = re.compile(r'[\s%#?"<>\[\]^`{|}]')


def link_target(path: str) -> str:
    """A relative path as a hyperlink target: characters that mean something in a link (space,
    ``#``, ``%``, ``?``...) are percent-encoded; letters stay as they are."""
    return _LINK_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), path)


def utf16_len(text: str) -> int:
    """Length as Excel counts it (UTF-16 code units: an emoji counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut_utf16(text: str, units: int) -> str:
    data = text.encode("utf-16-le", "surrogatepass")[: units * 2]
    return data.decode("utf-16-le", "ignore")


class SheetNames:
    """Excel sheet names: at most 31 characters, none of ``[]:*?/\\``, no leading/trailing
    apostrophe, not "History", unique without regard to case."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, wanted: str) -> str:
        base = _SHEET_BAD.sub("_", escape_forbidden(wanted)).strip("'").strip() or "sheet"
        if base.casefold() == "history":
            base = "_" + base
        name, n = base[:EXCEL_MAX_SHEET_NAME], 1
        while name.casefold() in self.used:
            n += 1
            suffix = f" ({n})"
            name = base[: EXCEL_MAX_SHEET_NAME - len(suffix)] + suffix
        self.used.add(name.casefold())
        return name


class _Sheet:
    """One logical table, written to one or more worksheets (continued past the row limit)."""

    def __init__(self, book: _Book, title: str, headers: list[str], widths: Sequence[float]):
        self.book, self.title, self.headers, self.widths = book, title, headers, widths
        self.part = 0
        self.ws: Any = None  # the write-only worksheet being written (openpyxl's stubs: Any)
        self.rows = 0
        self._new_part()

    def _new_part(self) -> None:
        self.part += 1
        title = self.title if self.part == 1 else f"{self.title[:EXCEL_MAX_SHEET_NAME - 6]} ({self.part})"
        ws = self.book.wb.create_sheet(self.book.names.make(title))
        ws.freeze_panes = "A2"
        for i, w in enumerate(self.widths, 1):
            ws.column_dimensions[get_column_letter(i)].width = w
        cells = []
        for h in self.headers:
            c = WriteOnlyCell(ws, value=escape_forbidden(h)[:EXCEL_MAX_CELL])
            c.data_type = "s"
            c.font = _BOLD
            cells.append(c)
        ws.append(cells)
        self.ws, self.rows, self.links = ws, 1, 0

    def append(self, values: Iterable[Any]) -> None:
        if self.rows >= self.book.max_rows:
            self._new_part()
        ws = self.ws
        row = []
        for v in values:
            if isinstance(v, _Val):
                c = WriteOnlyCell(ws, value=v.value)
                if v.string:
                    c.data_type = "s"
                if v.number_format:
                    c.number_format = v.number_format
                # Excel keeps at most 65,530 links per sheet and 2,079 characters per link: past
                # that the cell keeps its text (the path) without a link; this also bounds the
                # memory openpyxl uses for links (held until the workbook is saved)
                if v.link and self.links < self.book.max_links and len(v.link) <= EXCEL_MAX_LINK:
                    self.links += 1
                    c.hyperlink = v.link
                    c.font = _LINK
                row.append(c)
            else:
                row.append(v)
        ws.append(row)
        self.rows += 1


class _Val:
    __slots__ = ("link", "number_format", "string", "value")

    def __init__(self, value, string=False, number_format=None, link=None):
        self.value, self.string, self.number_format, self.link = value, string, number_format, link


class _Book:
    def __init__(self, max_rows: int, max_links: int = 65_530):
        self.wb = Workbook(write_only=True)
        self.names = SheetNames()
        self.max_rows = max_rows
        self.max_links = max_links
        self.newest = Newest()  # of the data the workbook holds: dates the file

    def sheet(self, title: str, headers: list[str], widths: Sequence[float] | None = None) -> _Sheet:
        if widths is None:
            widths = [min(max(len(h) + 2, 12), 60) for h in headers]
        return _Sheet(self, title, headers, widths)

    def save(self, target, rel: str) -> None:
        """Write the workbook with nothing of the wall clock in it: its core properties and every
        ZIP entry dated by the newest data it holds (``formats.stable``). This is openpyxl's
        ``save_workbook`` with our own ZIP and times (it would date both with the clock). On any
        failure the book is discarded before the error goes on (openpyxl refusing a value: a
        FormatError naming ``rel``)."""
        when = self.newest.value
        self.wb.properties.created = self.wb.properties.modified = when
        try:
            ExcelWriter(self.wb, DatedZip(target, when)).save()
        except BaseException as e:
            self.discard()
            if isinstance(e, (ValueError, TypeError)):  # openpyxl refusing a value
                raise FormatError(f"cannot write workbook: {e}", context=rel) from None
            raise

    def discard(self) -> None:
        """Abandon the workbook now: each streamed sheet's XML stream is closed and its temporary
        file (openpyxl writes a sheet to one) removed, rather than left to the garbage collector,
        which would print "Exception ignored" tracebacks for the half-closed streams."""
        for ws in self.wb.worksheets:
            try:
                if not ws.closed:
                    ws.close()
            except Exception as e:  # noqa: BLE001 - abandoning: only the first error matters
                logging.getLogger("exporter.xlsx").debug("abandoning sheet %s: %s", ws.title, e)
            writer = getattr(ws, "_writer", None)  # the sheet's stream, as openpyxl's own save uses it
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
                with contextlib.suppress(Exception):
                    writer.cleanup()


class XlsxWriter(FormStreamWriter):
    key = "xlsx"
    description = ("XLSX workbooks: one per form (a sheet per sub-form) with real numbers, dates and "
                   "booleans, links to media; users, groups and each external list")
    #: Excel's limits; tests lower ``max_rows`` on a subclass
    max_rows = EXCEL_MAX_ROWS
    max_links = EXCEL_MAX_LINKS
    max_columns = EXCEL_MAX_COLUMNS
    max_cell_chars = EXCEL_MAX_CELL
    limits = FormatLimits(max_cell_chars=EXCEL_MAX_CELL, max_rows_per_sheet=EXCEL_MAX_ROWS,
                          max_sheet_name=EXCEL_MAX_SHEET_NAME)

    def __init__(self, out: OutputDir, options: dict):
        self.out = out
        self.options = options
        self._form: Form | None = None
        self._book: _Book | None = None
        self._book_rel = ""
        self._main: _Sheet | None = None
        self._main_cols: list[Column] = []
        self._subs: list[tuple[FieldDef, list[Column], _Sheet]] = []
        self._people: dict[str, Any] = {}
        self._account_seen = False

    # ---- cells -------------------------------------------------------------------------
    def _text(self, text: str, base: str, long_name: str, link: str | None = None) -> str | _Val:
        text = escape_forbidden(text)
        if len(text) * 2 <= self.max_cell_chars or utf16_len(text) <= self.max_cell_chars:
            if link is None and not text.startswith("="):
                return text  # openpyxl stores a str as text unless it starts with "="
            return _Val(text, string=True, link=link)
        rel = long_value_path(self.out, base, long_name)
        with self.out.atomic(rel, "wb") as fh:
            fh.write(text.encode("utf-8", "backslashreplace"))
        target = relative(rel, base)
        marker = f"[cut: {len(text)} characters, full text in {target}] "
        room = max(0, self.max_cell_chars - utf16_len(marker))
        shown = _cut_utf16(marker + _cut_utf16(text, room), self.max_cell_chars)
        return _Val(shown, string=True, link=link_target(target))

    def _cell(self, value, text: str | None, base: str, long_name: str,
              links: list[tuple[str, str]] | None = None) -> Any:
        if value is None:
            return self._text(text, base, long_name) if text else None
        if isinstance(value, bool):
            return value
        if isinstance(value, Decimal):
            if value.is_finite() and len(value.as_tuple().digits) <= 15 and -300 < value.adjusted() < 300:
                return int(value) if value == value.to_integral_value() else float(value)
            return self._text(str(value) if not value.is_finite() else format(value, "f"), base, long_name)
        if isinstance(value, (dt.date, dt.time)):  # openpyxl gives dates, times, date-times a format
            day = value.date() if isinstance(value, dt.datetime) else value
            if isinstance(day, dt.date) and day < _EXCEL_MIN_DATE:
                return self._text(value.isoformat(), base, long_name)
            return value
        if isinstance(value, GeoPoint):
            return f"{value.latitude},{value.longitude}"
        if isinstance(value, tuple):
            if not value:
                return None
            if links is None:
                return self._text("; ".join(value), base, long_name)
            paths = [p for _, p in links]
            target = paths[0] if len(paths) == 1 else paths[0].rpartition("/")[0] + "/"
            return self._text("; ".join(paths), base, long_name, link=link_target(target))
        return self._text(str(value), base, long_name)

    def _row(self, form: Form, sub: Submission, cols: list[Column], base: str, sf: FieldDef | None = None,
             row=None) -> list:
        out = []
        for col, value, text in row_cells(cols, sub, row):
            if col.source == ROW_INDEX:
                out.append(value)
                continue
            if col.source == META and value and col.key.endswith("_time"):
                when = _meta_time(value)
                if when is not None:
                    out.append(when)
                    continue
            if col.source == SUBMISSION_ID:
                out.append(self._text(sub.id, base, f"{sub.id}-id"))
                continue
            links = column_links(self.out, form, sub, col, value, base, sf, row)
            where = f"{sub.id}-{sf.name}-{row.index}-{col.key}" if sf else f"{sub.id}-{col.header}"
            out.append(self._cell(value, text, base, where, links))
        return out

    @staticmethod
    def _widths(cols: list[Column]) -> list[float]:
        out: list[float] = []
        for c in cols:
            base = _WIDTH.get(c.kind, 20) if c.field is not None else (12 if c.source != "meta" else 20)
            out.append(min(max(len(c.header) + 2, base), 60))
        return out

    # ---- records (dispatched by FormStreamWriter.write) --------------------------------
    def _on_user(self, user) -> None:
        self._open_people()
        self._people["users_book"].newest.add(user.create_time)
        self._people["users"].append(
            [self._cell(user_cell(user, k), user_cell(user, k), "", user_long_name(user.id, k))
             if k != "admin" else user.admin for k in USER_COLUMNS])

    def _on_group(self, group) -> None:
        self._open_people()
        self._people["groups"].append([self._cell(v, v, "", f"group-{group.id}")
                                       for v in group_cells(group)])
        for member in group_members(group):
            self._people["members"].append([_Val(escape_forbidden(v), string=True) for v in member])

    def _open_people(self) -> None:
        if "users_book" in self._people:
            return
        ub, gb = _Book(self.max_rows, self.max_links), _Book(self.max_rows, self.max_links)
        self._people |= {
            "users_book": ub, "groups_book": gb,
            "users": ub.sheet("users", list(USER_COLUMNS)),
            "groups": gb.sheet("groups", list(GROUP_COLUMNS)),
            "members": gb.sheet("members", ["group_id", "user_id", "role"]),
        }

    def _on_list(self, lst) -> None:
        if "lists_book" not in self._people:
            lb = _Book(self.max_rows, self.max_links)
            self._people["lists_book"], self._people["lists"] = lb, lb.sheet("lists", list(LIST_COLUMNS))
        self._people["lists_book"].newest.add(lst.update_time)
        self._people["lists"].append([v if not isinstance(v, str) else self._cell(v, v, "", f"list-{lst.id}")
                                      for v in list_cells(lst)])
        levels, cols = list_item_columns(lst.parsed_items())
        book = _Book(self.max_rows, self.max_links)
        headers = ["index", "line", *list_item_headers(levels, cols)]
        sheet = book.sheet(lst.name or lst.id, headers, [8, 40] + [24] * (len(headers) - 2))
        for item in lst.parsed_items():
            sheet.append([item.index, self._cell(item.line, item.line, "lists", f"{lst.id}-{item.index}")]
                         + [self._cell(v, v, "lists", f"{lst.id}-{item.index}-cell") if v else None
                            for v in list_item_cells(item, levels, cols)])
        rel = "lists/" + self.out.safe(f"{lst.id}-{lst.name}") + ".xlsx"
        book.newest.add(lst.update_time)
        try:
            with self.out.atomic(rel, "wb") as fh:
                book.save(fh, rel)
        except BaseException:
            book.discard()
            raise

    def _start_form(self, form: Form) -> None:
        main_cols = form_columns(form)
        widest = max([len(main_cols)] + [len(sf.children) + 2 for sf in form.subforms()])
        if widest > self.max_columns:
            raise FormatError(f"{widest} columns, more than the {self.max_columns} an Excel sheet holds "
                              "(use csv, json or a database for this form)", context=f"form {form.id} ({form.name})")
        self._form, self._main_cols = form, main_cols
        if not self.aggregates:  # the width is checked all the same: a form too wide fails early
            return
        agg = self.out.aggregate_dir(form)
        self._book_rel = f"{agg}/submissions.xlsx"
        book = self._book = _Book(self.max_rows, self.max_links)
        book.newest.add(form.update_time)
        main = self._main = book.sheet("submissions", [c.header for c in self._main_cols], self._widths(self._main_cols))
        self._subs = []
        for sf in form.subforms():
            cols = subform_columns(sf)
            self._subs.append((sf, cols, book.sheet(sf.name, [c.header for c in cols], self._widths(cols))))
        self._fields_sheet(book, main, form)

    def _fields_sheet(self, book: _Book, main: _Sheet, form: Form) -> None:
        """A sheet describing every column: the field's caption, type and kind."""
        sheet = book.sheet("fields", ["sheet", "column", "field", "caption", "type", "kind", "required",
                                            "list_id"], [20, 24, 24, 40, 12, 10, 9, 9])
        base = self.out.aggregate_dir(form)
        tables = [(main, self._main_cols, {f.name: f for f in form.value_fields()})]
        tables += [(sh, cols, {c.name: c for c in sf.children}) for sf, cols, sh in self._subs]
        for sh, cols, by_name in tables:
            for c in cols:
                f = by_name.get(c.key) if c.field is not None else None
                sheet.append([self._cell(v, v, base, "fields") if isinstance(v, str) else v for v in (
                    sh.ws.title, c.header, c.key if f else None, f.caption if f else None, f.type if f else None,
                    c.kind, f.required if f else None, f.list_id if f else None)])

    def _finish_form(self) -> None:
        book, self._book = self._book, None
        self._main, self._subs, self._form = None, [], None
        if book is not None:
            try:
                path = self.out.pending_path(self._book_rel)
            except BaseException:
                book.discard()
                raise
            book.save(path, self._book_rel)
            self.out.finish(self._book_rel)

    def _abandon(self) -> None:
        books = [self._book] if self._book is not None else []
        books += [self._people[k] for k in ("users_book", "groups_book", "lists_book") if k in self._people]
        self._book, self._people = None, {}
        for book in books:
            book.discard()

    def _write_submission(self, sub: Submission) -> None:
        form = submission_form(self._form, sub)
        if self._main is None or self._book is None:  # records only: nothing per submission
            return
        base = self.out.aggregate_dir(form)
        self._book.newest.add(sub.update_time)
        self._main.append(self._row(form, sub, self._main_cols, base))
        for sf, cols, sheet in self._subs:
            for row in sub.subforms.get(sf.name, []):
                sheet.append(self._row(form, sub, cols, base, sf, row))

    # ---- end (FormStreamWriter.close) ---------------------------------------------------
    def _finish_account(self) -> None:
        if self._account_seen:
            self._open_people()
        if self._people:
            for key, rel in (("users_book", "users.xlsx"), ("groups_book", "groups.xlsx"), ("lists_book", "lists.xlsx")):
                book = self._people.pop(key, None)
                if book is None:  # no external list
                    continue
                try:
                    path = self.out.pending_path(rel)
                except BaseException:
                    book.discard()
                    raise
                book.save(path, rel)
                self.out.finish(rel)
