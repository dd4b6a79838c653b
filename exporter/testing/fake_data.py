"""Records and queries of the fake Kizeo service (``fake_server``): the nested and flat shapes of a
submission, and the ``data/advanced`` filters (``= > >= < <= != like notlike``, AND/OR) and order."""
from __future__ import annotations

import re
from typing import Any, TypeVar


def nest_submission(raw: dict) -> dict:
    """A flat (``_``-prefixed) record back to the nested shape; a nested one is returned as is."""
    if "fields" in raw or "_id" not in raw:
        return raw
    out: dict[str, Any] = {k[1:]: v for k, v in raw.items() if k.startswith("_")}
    fields: dict[str, Any] = {}
    for k, v in raw.items():
        if k.startswith("_"):
            continue
        if isinstance(v, list):
            fields[k] = {"value": [{ck: {"value": cv} for ck, cv in row.items()} if isinstance(row, dict) else row
                                   for row in v]}
        else:
            fields[k] = {"value": v}
    out["fields"] = fields
    return out


def flatten(nested: dict, fmt: str = "basic") -> dict:
    """Nested -> flat record (``data/advanced``, ``data/unread``); see ``records.flatten_submission``.

    As the vendor documents for ``data/unread``: ``simple`` (the service's default) returns "only the
    first level of the data (the tables are not returned)", ``basic`` returns everything. A
    submission never edited has an empty ``_update_time`` (whether the service fills it is not
    documented: the fake takes the case a client can get wrong)."""
    out: dict[str, Any] = {}
    for k, v in nested.items():
        if k != "fields":
            out["_" + k] = v
    for name, cell in (nested.get("fields") or {}).items():
        v = cell.get("value") if isinstance(cell, dict) else cell
        if isinstance(v, list):
            if fmt == "basic":
                out[name] = [{ck: (cv.get("value") if isinstance(cv, dict) else cv) for ck, cv in row.items()}
                             if isinstance(row, dict) else row for row in v]
        else:
            out[name] = v
    if not out.get("_update_time"):
        out["_update_time"] = ""
    return out


def data_format(value: Any) -> str:
    """The ``format`` of a data query: ``simple`` unless told otherwise (the service's default)."""
    fmt = str(value or "simple")
    if fmt not in ("simple", "basic"):
        raise ValueError(f"unknown format {fmt!r}")
    return fmt


# ---- filters --------------------------------------------------------------------------------

def _num(v: Any) -> float | None:
    try:
        return float(str(v).replace(",", "."))
    except (TypeError, ValueError):
        return None


def _like(value: str, pattern: str) -> bool:
    if "%" not in pattern and "_" not in pattern:
        return pattern in value
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.DOTALL) is not None


def _compare(value: Any, op: str, want: Any) -> bool:
    if isinstance(value, list):
        value = str(len(value))
    a = "" if value is None else str(value)
    b = "" if want is None else str(want)
    if op == "like":
        return _like(a, b)
    if op == "notlike":
        return not _like(a, b)
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return _order(na, op, nb)
    return _order(a, op, b)


_Ordered = TypeVar("_Ordered", float, str)


def _order(x: _Ordered, op: str, y: _Ordered) -> bool:
    """``x op y`` for two numbers or two texts."""
    if op == "=":
        return x == y
    if op == "!=":
        return x != y
    if op == ">":
        return x > y
    if op == ">=":
        return x >= y
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    raise ValueError(f"unknown operator {op!r}")


def matches(flat: dict, flt: Any) -> bool:
    if not isinstance(flt, dict):
        raise TypeError("a filter must be an object")
    ftype = str(flt.get("type") or "simple")
    if ftype.upper() in ("AND", "OR"):
        comps = flt.get("components") or []
        if not isinstance(comps, list):
            raise ValueError("filter components must be a list")
        results = (matches(flat, c) for c in comps)
        return all(results) if ftype.upper() == "AND" else any(results)
    fieldname = flt.get("field")
    if not fieldname:
        raise ValueError("a simple filter needs a field")
    return _compare(flat.get(fieldname), str(flt.get("operator") or "="), flt.get("val"))


def sort_rows(rows: list[dict], order: list) -> list[dict]:
    for spec in reversed(order or []):
        col = spec.get("col")
        desc = str(spec.get("type") or "asc").lower() == "desc"

        def key(r: dict, col: str = col) -> tuple:
            v = r.get(col)
            n = _num(v)
            return (v is None, 0 if n is not None else 1, n if n is not None else 0, "" if v is None else str(v))

        rows.sort(key=key, reverse=desc)
    return rows
