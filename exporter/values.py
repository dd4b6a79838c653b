"""The typing rules: how a value the service serves as text becomes a typed value.

One converter per field kind (number, date, time, datetime, boolean, geoloc, media; text stays
text), written once and used everywhere: ``typed_value`` types one value, and the per-form parse
plans (``exporter.parse_plan``) pick the same converters once per field for whole submissions.
A text that does not parse gives None; the caller keeps the text, so nothing is lost. The fast
paths for the common ISO shapes accept only texts the regular-expression path would read the same
way, and fall back to it otherwise.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from .model import BOOLEAN, DATE, DATETIME, GEOLOC, MEDIA, NUMBER, TIME, FieldDef, GeoPoint, Value


def as_text(v: Any) -> str | None:
    """Service ids and values arrive as strings, numbers or null: normalise to str/None."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


_DATE_RES = [
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), lambda m: dt.date(int(m[1]), int(m[2]), int(m[3]))),
    (re.compile(r"^(\d{2})/(\d{2})/(\d{4})$"), lambda m: dt.date(int(m[3]), int(m[2]), int(m[1]))),
]
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")
_TRUE = {"1", "true", "yes", "oui", "on", "vrai", "x"}
_FALSE = {"0", "false", "no", "non", "off", "faux", ""}


def typed_value(fdef: FieldDef, text: str | None, options: dict, cell: dict | None = None) -> Value:
    """Type one served value from its field definition. Returns None where the text does not
    parse; the caller keeps the text, so nothing is lost. (Parsing a whole submission runs the
    same converters through a per-form plan, ``exporter.parse_plan``.)"""
    bools = (as_text(options.get("checkbox_output_true_value")), as_text(options.get("checkbox_output_false_value")))
    return CONVERTERS.get(fdef.kind, _conv_text)(text, cell, bools)


_date_iso = dt.date.fromisoformat
_time_iso = dt.time.fromisoformat
_datetime_iso = dt.datetime.fromisoformat
_PARSE_ERRORS = (InvalidOperation, ValueError, OverflowError)


def _conv_text(text: str | None, cell: dict | None, bools: Any) -> Value:
    return text


def _conv_number(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    if not t:
        return None
    try:
        return Decimal(t.replace(",", ".").replace(" ", ""))
    except _PARSE_ERRORS:
        return None


def _date_slow(t: str) -> Value:
    try:
        for rx, make in _DATE_RES:
            m = rx.match(t)
            if m:
                return make(m)
    except _PARSE_ERRORS:
        return None
    return None


def _conv_date(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    if len(t) == 10 and t[4] == "-":
        try:
            v = _date_iso(t)
        except ValueError:
            pass
        else:
            if v.isoformat() == t:  # exactly YYYY-MM-DD in ASCII digits: what the regex reads
                return v
    return _date_slow(t)


def _time_slow(t: str) -> Value:
    m = _TIME_RE.match(t)
    try:
        return dt.time(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None
    except _PARSE_ERRORS:
        return None


def _conv_time(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    n = len(t)
    if (n == 5 or n == 8) and t[2] == ":":
        try:
            v = _time_iso(t)
        except ValueError:
            pass
        else:
            if v.tzinfo is None and v.microsecond == 0 and v.isoformat()[:n] == t and (n == 8 or not v.second):
                return v
    return _time_slow(t)


def _datetime_slow(t: str) -> Value:
    m = _DATETIME_RE.match(t)
    if not m:
        return None
    try:
        return dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
    except _PARSE_ERRORS:
        return None


def _conv_datetime(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    n = len(t)
    if (n == 19 or n == 16) and t[4] == "-":
        sep = t[10]
        if sep == " " or sep == "T":
            try:
                v = _datetime_iso(t)
            except ValueError:
                pass
            else:
                if (v.tzinfo is None and v.microsecond == 0 and v.isoformat(sep)[:n] == t
                        and (n == 19 or not v.second)):
                    return v
    return _datetime_slow(t)


def _conv_boolean(text: str | None, cell: dict | None, bools: Any) -> Value:
    if cell and isinstance(cell.get("boolean"), bool):
        return cell["boolean"]
    if text is None:
        return None
    t = text.strip()
    true_v, false_v = bools
    if true_v is not None and t == true_v:
        return True
    if false_v is not None and t == false_v:
        return False
    low = t.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


def _conv_geoloc(text: str | None, cell: dict | None, bools: Any) -> Value:
    if text is None:
        return None
    t = text.strip()
    try:
        parts = [p.strip() for p in t.replace(";", ",").split(",")]
        if len(parts) < 2 or not parts[0]:
            return None
        lat, lon = float(parts[0]), float(parts[1])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        return GeoPoint(lat, lon)
    except _PARSE_ERRORS:
        return None


def _conv_media(text: str | None, cell: dict | None, bools: Any) -> Value:
    """The media names of a value: comma-separated, blanks around each name dropped, empty names
    skipped (one name, the usual case, without splitting)."""
    if text is None:
        return None
    if "," not in text:
        t = text.strip()
        return (t,) if t else ()
    return tuple([n for n in map(str.strip, text.split(",")) if n])


#: a typed-value converter: (served text, the served cell, how booleans are written) -> value
Converter = Callable[[str | None, dict | None, Any], Value]

CONVERTERS: dict[str, Converter] = {NUMBER: _conv_number, DATE: _conv_date, TIME: _conv_time, DATETIME: _conv_datetime,
               BOOLEAN: _conv_boolean, GEOLOC: _conv_geoloc, MEDIA: _conv_media}

# texts of metadata times already read (naive ones only); a submission's six times are often
# equal and neighbouring submissions share them
_META_TIMES: dict[str, dt.datetime] = {}


def meta_time(text: str | None) -> tuple[dt.datetime | None, bool]:
    """A metadata time (``create_time``, ``update_time``...: ISO text, served without an offset) as
    a naive datetime, and whether its text says more than that value, so that a destination
    keeps the text beside it: one that does not parse (None), or one with an offset (the wall
    time kept, the offset dropped)."""
    v = _META_TIMES.get(text)  # type: ignore[arg-type]
    if v is not None:
        return v, False
    if text is None or not text.strip():
        return None, False
    try:
        v = _datetime_iso(text.strip())
    except ValueError:
        return None, True
    if v.tzinfo is not None:
        return v.replace(tzinfo=None), True
    if len(_META_TIMES) >= 4096:
        _META_TIMES.clear()
    _META_TIMES[text] = v
    return v, False
