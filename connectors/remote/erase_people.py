"""The users and groups a remote's people files hold, read back for ``exporter forget``: each
format's own files give the records its writer then writes again without the person (one way to
write each format: the writer's).

* JSON: ``users.json``, ``groups.json`` (each record's payload as served, the ``raw`` key);
* CSV: ``users.csv``, ``groups.csv`` (their ``_extra`` JSON cell gives back the other served keys)
  and ``group_members.csv`` (the members and leaders of each group, in order); the delimiter and
  BOM are read from the files themselves (``csv_dialect``), so they are written again as they
  were made. Cells
  are read as written: the formula guard's ``'`` stays, and the writer does not add a second;
* XLSX: ``users.xlsx`` (sheet ``users``), ``groups.xlsx`` (sheets ``groups`` and ``members``),
  continued sheets (``users (2)``) included. A cell the writer cut (text past Excel's limit) comes
  back as its marker, and is written again as it is: its full text stays in its ``long-values``
  file.

Each row becomes the payload the service would have served (``parse_user``/``parse_group``), so
the erasure (``exporter.privacy.erase_records``) is the one every destination uses.
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from exporter.formats.tabular import GROUP_FIELDS, USER_FIELDS

from exporter.errors import SinkError
from exporter.model import Group, User
from exporter.records import parse_group, parse_user

#: the people files of each format
PEOPLE_FILES: dict[str, tuple[str, ...]] = {
    "json": ("users.json", "groups.json"),
    "csv": ("users.csv", "groups.csv", "group_members.csv"),
    "xlsx": ("users.xlsx", "groups.xlsx"),
}
_CONTINUED = re.compile(r"(.*) \(\d+\)")
#: the key column one of which the header of every CSV file the exporter writes names
_CSV_KEYS = ("_id", "_submission_id", "id", "group_id")


def people_format(rel: str) -> str | None:
    """The format whose people file ``rel`` is, if it is one."""
    return next((fmt for fmt, names in PEOPLE_FILES.items() if rel in names), None)


def _extra(text: Any, where: str) -> dict:
    if text in (None, ""):
        return {}
    try:
        extra = json.loads(str(text))
    except ValueError:
        raise SinkError(f"{where}: its _extra cell is not JSON; export it again without the person") from None
    return extra if isinstance(extra, dict) else {}


def _user(row: dict[str, Any], where: str) -> User:
    payload = _extra(row.get("_extra"), where)
    payload.update({k: None if row.get(k) == "" else row.get(k) for k in USER_FIELDS})
    return parse_user(payload)


def _groups(rows: Iterator[dict[str, Any]], members: Iterator[dict[str, Any]], where: str) -> list[Group]:
    payloads: dict[str, dict] = {}
    for row in rows:
        payload = _extra(row.get("_extra"), where)
        payload.update({k: None if row.get(k) == "" else row.get(k) for k in GROUP_FIELDS})
        payload.update(users=[], leaders=[])
        payloads[str(row.get("id"))] = payload
    for m in members:
        group = payloads.get(str(m.get("group_id")))
        if group is not None and m.get("role") in ("member", "leader"):
            group["users" if m["role"] == "member" else "leaders"].append(str(m.get("user_id")))
    return [parse_group(p) for p in payloads.values()]


def json_people(load: Callable[[str], Any], present: set[str]) -> tuple[list[User], list[Group]]:
    """The records ``users.json``/``groups.json`` keep (``load`` reads a remote JSON file)."""
    users = [parse_user(o.get("raw") or o) for o in (load("users.json") or [])] if "users.json" in present else []
    groups = [parse_group(o.get("raw") or o) for o in (load("groups.json") or [])] if "groups.json" in present else []
    return users, groups


def csv_dialect(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The ``csv_delimiter`` and ``csv_bom`` a CSV file of the exporter (any: people, aggregates)
    was written with, read from the file: its header names its key column (``id``, ``_id``...)
    under one delimiter only; ``options`` (as given to the export) when the header cannot tell."""
    from exporter.formats.catalog import CSV

    with open(path, "rb") as fh:
        head = fh.readline(1 << 20)
    bom = head.startswith(b"\xef\xbb\xbf")
    text = head[3 if bom else 0:].decode("utf-8", "replace")
    for delimiter in (",", ";"):
        if any(k in next(csv.reader([text], delimiter=delimiter), []) for k in _CSV_KEYS):
            return {"csv_delimiter": delimiter, "csv_bom": bom}
    return {"csv_delimiter": CSV.parse_options(options, strict=False)["csv_delimiter"], "csv_bom": bom}


def csv_people(files: dict[str, Path], options: dict[str, Any]) -> tuple[list[User], list[Group], dict[str, Any]]:
    """The records the people CSV files hold (``files``: name -> downloaded copy), and the
    options (``options`` with the delimiter and BOM the files were written with) to write them
    again as they were made."""
    first = next(iter(files.values()), None)
    dialect = csv_dialect(first, options) if first is not None else {}

    def rows(name: str) -> Iterator[dict[str, Any]]:
        path = files.get(name)
        if path is None:
            return
        with open(path, encoding="utf-8-sig", newline="") as fh:
            yield from csv.DictReader(fh, delimiter=dialect["csv_delimiter"], quotechar='"', strict=True)

    try:
        users = [_user(r, "users.csv") for r in rows("users.csv")]
        return users, _groups(rows("groups.csv"), rows("group_members.csv"), "groups.csv"), {**options, **dialect}
    except csv.Error as e:
        raise SinkError(f"a people CSV file cannot be read ({e}); export it again without the person") from None


def _sheet_rows(path: Path, rel: str, table: str) -> Iterator[dict[str, Any]]:
    """The rows of a workbook's sheet ``table`` and its continuations, as header -> value."""
    from openpyxl import load_workbook

    with open(path, "rb") as fh:  # (the downloaded copy has no .xlsx suffix)
        try:
            book = load_workbook(fh, read_only=True)
        except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds for a file it cannot read
            raise SinkError(f"{rel} cannot be read as a workbook ({type(e).__name__}: {e}); "
                            "export it again without the person") from None
        try:
            for ws in book.worksheets:
                m = _CONTINUED.fullmatch(ws.title)
                if (m.group(1) if m else ws.title) != table:
                    continue
                it = ws.iter_rows(values_only=True)
                header = [str(h) if h is not None else "" for h in next(it, ())]
                for values in it:
                    yield {h: (v if v is None or isinstance(v, (bool, str)) else str(v))
                           for h, v in zip(header, values, strict=False)}
        finally:
            book.close()


def xlsx_people(files: dict[str, Path]) -> tuple[list[User], list[Group]]:
    """The records the people workbooks hold (``files``: name -> downloaded copy)."""
    users, groups = files.get("users.xlsx"), files.get("groups.xlsx")
    out_users = [_user(r, "users.xlsx") for r in _sheet_rows(users, "users.xlsx", "users")] if users else []
    if groups is None:
        return out_users, []
    return out_users, _groups(_sheet_rows(groups, "groups.xlsx", "groups"),
                              _sheet_rows(groups, "groups.xlsx", "members"), "groups.xlsx")
