"""Shared fixtures for the file-format writers: a realistic account built from raw service
payloads (nested and flat shapes) through ``exporter.records``, with hostile values everywhere.

Use::

    def test_x(dataset, tmp_path):
        out, writer = run_writer(JsonWriter, tmp_path, {}, dataset.records())

``dataset`` is a :class:`Dataset`; ``dataset.records()`` yields a fresh record stream in the
service order (Account, users, groups, lists, then per form: Form, each Submission followed by its
Media, a Checkpoint). ``run_writer`` feeds a writer and publishes what it wrote.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from exporter.formats.base import OutputDir

from exporter.model import (
    Account,
    Checkpoint,
    ExternalList,
    Form,
    Group,
    Media,
    MediaRef,
    Submission,
    User,
)
from exporter.records import (
    flatten_submission,
    parse_form,
    parse_group,
    parse_list,
    parse_submission,
    parse_user,
)

# ---- hostile values ------------------------------------------------------------------------
LONG_TEXT = ("Lorem ipsum ✓ דוד 😀 " * 2000)[:40000]  # 40,000 characters
RTL = "שלום עולם مرحبا بالعالم"
EMOJI = "👩‍👩‍👧‍👦 🇫🇷 👍🏽 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
CONTROL = "bell\x07 nul\x00 esc\x1b vt\x0b ff\x0c del\x7f c1\x85 end"
LONE_SURROGATE = "half \ud83d of an emoji, \ufffe non-character"  # possible after json.loads("\\ud83d")
FORMULA = "=HYPERLINK(\"http://evil.example\",\"click\")"
FORMULAS = ["=1+2", "+SUM(A1:A2)", "-2+3", "@cmd", "\tTAB", "\rCR"]
MULTILINE = "line 1\r\nline 2\nline \"3\", quoted; semi"
BAD_FIELD = 'a"b/c\\..\\../x'  # a field name with quotes, slashes and ../
DOTDOT_FIELD = "../../etc/passwd"
SPACE_FIELD = "  Prénom  (nom) : <b>&amp;</b>  "

FORM_ID = "812345"
FORM_NAME = "Inspection ../../ «chantier» / Été:2024 *?"

RAW_FORM = {
    "id": FORM_ID,
    "name": FORM_NAME,
    "class": "Qualité",
    "update_time": "2024-05-02 10:11:12",
    "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"},
    "fields": {
        "title_section": {"type": "section", "caption": "Header"},
        "name": {"type": "text", "caption": "Name", "required": True},
        "comment": {"type": "textarea", "caption": "Comment"},
        "amount": {"type": "number", "caption": "Amount"},
        "visit_date": {"type": "date", "caption": "Date"},
        "visit_time": {"type": "time", "caption": "Time"},
        "visit_dt": {"type": "datetime", "caption": "When"},
        "done": {"type": "checkbox", "caption": "Done?"},
        "where": {"type": "geoloc", "caption": "Where"},
        "photo": {"type": "photo", "caption": "Photos"},
        "sig": {"type": "signature", "caption": "Signature"},
        "status": {"type": "list", "caption": "Status", "list_id": "77"},
        BAD_FIELD: {"type": "text", "caption": "Hostile name"},
        DOTDOT_FIELD: {"type": "text", "caption": "Traversal"},
        SPACE_FIELD: {"type": "text", "caption": "Spaces"},
        "weird_type": {"type": "hologram", "caption": "Unknown type -> text"},
        "lines": {"type": "subform", "caption": "Lines", "fields": {
            "item": {"type": "text"},
            "qty": {"type": "number"},
            "checked": {"type": "checkbox"},
            "when": {"type": "date"},
            "pic": {"type": "photo"},
            "deco": {"type": "fixed_text"},
        }},
        "empty_sub": {"type": "subform", "caption": "Never filled", "fields": {"x": {"type": "text"}}},
    },
}

EMPTY_FORM = {"id": "900", "name": "Empty form", "fields": {"only": {"type": "text"}}}


def _cell(v, **kw):
    return {"value": v, "type": "text", **kw}


def _meta(i: int, **kw) -> dict:
    base = {
        "id": str(1000 + i), "record_number": str(i), "form_id": FORM_ID, "user_id": "11",
        "create_time": f"2024-05-0{i} 08:00:00", "update_time": f"2024-05-0{i} 09:30:00",
        "answer_time": f"2024-05-0{i} 08:00:00", "direction": "answer", "user_name": "Dupont Jean",
        "first_name": "Jean", "last_name": "Dupont", "login": "jdupont", "email": "j@example.com",
        "history": None,
    }
    base.update(kw)
    return base


RAW_SUBMISSIONS = [
    # 1: a clean, fully typed submission (nested shape)
    {**_meta(1), "fields": {
        "name": _cell("Alice"), "comment": _cell(MULTILINE), "amount": _cell("-5"),
        "visit_date": _cell("2024-05-01"), "visit_time": _cell("14:05"),
        "visit_dt": _cell("2024-05-01 14:05:09"), "done": _cell("Oui"),
        "where": _cell("48.8584,2.2945"), "photo": _cell("photo_1.jpg, photo 2 é.png"),
        "sig": _cell("sig.png"), "status": _cell("Open:OPN"),
        BAD_FIELD: _cell("hostile-field value"), DOTDOT_FIELD: _cell("traversal value"),
        SPACE_FIELD: _cell("spaces value"), "weird_type": _cell("kept as text"),
        "lines": {"value": [
            {"item": _cell("Bolt M8"), "qty": _cell("12.50"), "checked": _cell("1"),
             "when": _cell("02/05/2024"), "pic": _cell("row0.jpg")},
            {"item": _cell(FORMULA), "qty": _cell("not a number"), "checked": _cell("0"),
             "when": _cell("2024-13-45"), "pic": _cell("")},
        ]},
    }},
    # 2: hostile values everywhere, values that do not type (nested shape)
    {**_meta(2, user_name=RTL, first_name=EMOJI, login="=cmd|' /C calc'!A0"), "fields": {
        "name": _cell(RTL + " " + EMOJI), "comment": _cell(LONG_TEXT), "amount": _cell("12,345.67x"),
        "visit_date": _cell("yesterday"), "visit_time": _cell("25h"), "visit_dt": _cell("soon"),
        "done": _cell("maybe"), "where": _cell("north pole-ish"), "photo": _cell(""),
        "sig": _cell(None), "status": _cell(FORMULA),
        BAD_FIELD: _cell(CONTROL), DOTDOT_FIELD: _cell("@SUM(1)"), SPACE_FIELD: _cell("+33 6 12 34 56 78"),
        "weird_type": _cell("-minus text"),
        "lines": {"value": []},
    }},
    # 3: flat shape, precise decimals, booleans, a media in a sub-form row only
    flatten_submission({**_meta(3), "fields": {
        "name": _cell("=1+2"), "comment": _cell("\tTAB start"), "amount": _cell("12345678901234567890.123456789"),
        "visit_date": _cell("31/12/1999"), "visit_time": _cell("23:59:59"),
        "visit_dt": _cell("2000-01-01T00:00"), "done": _cell("Non"), "where": _cell("-33.8568;151.2153"),
        "photo": _cell("../../evil.jpg"), "sig": _cell(""), "status": _cell("Closed:CLS"),
        BAD_FIELD: _cell(LONE_SURROGATE), DOTDOT_FIELD: _cell(None), SPACE_FIELD: _cell("\rCR start"),
        "weird_type": _cell("0"),
        "lines": {"value": [
            {"item": _cell("Nut"), "qty": _cell("0"), "checked": _cell("Oui"), "when": _cell("2024-02-29"),
             "pic": _cell("row-only.jpg")},
        ]},
    }}),
]

RAW_USERS = [
    {"id": 11, "login": "jdupont", "first_name": "Jean", "last_name": "Dupont", "email": "j@example.com",
     "phone": "+33 1 23 45 67 89", "admin": "1", "main_group_id": 5, "create_time": "2020-01-01 00:00:00"},
    {"id": "12", "login": "=HYPERLINK(\"x\")", "first_name": RTL, "last_name": EMOJI, "email": "",
     "phone": "-1", "admin": False, "main_group_id": None},
]
RAW_GROUPS = [
    {"id": 5, "name": "Équipe ../ Nord", "parent_group_id": 0, "users": [11, {"id": 12}], "leaders": [11],
     "children": [6]},
    {"id": 6, "name": "=Sud", "parent_group_id": 5, "users": [], "leaders": [], "children": []},
]
RAW_LISTS = [
    {"id": 77, "name": "Statuts / états", "class": "ref", "update_time": "2024-01-01 00:00:00",
     "items": ["Open:OPN", "Closed:CLS|Fermé:F", "Région A:RA\\Ville 1:V1|Extra", "=1+1", RTL + ":R",
               "", "no code", "a:b:c"]},
    {"id": "78", "name": "../../escape", "items": ["x"]},
]

MEDIA_BYTES = {
    "photo_1.jpg": b"\xff\xd8\xff\xe0JPEGDATA" * 10,
    "photo 2 é.png": b"\x89PNG\r\n\x1a\nPNGDATA",
    "sig.png": b"\x89PNG\r\n\x1a\nSIG",
    "row0.jpg": b"\xff\xd8ROW0",
    "../../evil.jpg": b"\xff\xd8EVIL",
    "row-only.jpg": b"\xff\xd8ROWONLY",
}


@dataclass
class Dataset:
    account: Account
    users: list[User]
    groups: list[Group]
    lists: list[ExternalList]
    form: Form
    submissions: list[Submission]
    empty_form: Form
    media_bytes: dict[str, bytes] = field(default_factory=dict)

    def media_for(self, sub: Submission) -> list[Media]:
        out = []
        for ref in sub.media:
            data = self.media_bytes.get(ref.name, b"")
            ctype = "image/png" if ref.name.endswith(".png") else "image/jpeg"
            out.append(Media.spooled(ref, ctype, iter([data[:5], data[5:]])))
        return out

    def records(self) -> Iterator:
        """A fresh stream in service order (Media rebuilt each time, so it can be re-read)."""
        yield self.account
        yield from self.users
        yield from self.groups
        yield from self.lists
        yield self.form
        for sub in self.submissions:
            yield sub
            yield from self.media_for(sub)
        yield Checkpoint(self.form.id, max(s.update_time for s in self.submissions))
        yield self.empty_form
        yield Checkpoint(self.empty_form.id, None)

    def submission(self, sid: str) -> Submission:
        return next(s for s in self.submissions if s.id == sid)


def build_dataset() -> Dataset:
    form = parse_form(RAW_FORM)
    subs = [parse_submission(form, p) for p in RAW_SUBMISSIONS]
    # sanity: the fixture really is typed the way the tests expect
    assert subs[0].values["amount"] == Decimal(-5)
    assert subs[0].values["visit_date"] == dt.date(2024, 5, 1)
    assert subs[0].values["done"] is True
    assert subs[1].values["amount"] is None and subs[1].text["amount"] == "12,345.67x"
    assert len(subs[1].text["comment"]) == 40000
    return Dataset(
        account=Account(source="https://forms.example/rest/v3", timezone="Europe/Paris",
                        exported_at="2024-05-10T12:00:00+00:00"),
        users=[parse_user(u) for u in RAW_USERS],
        groups=[parse_group(g) for g in RAW_GROUPS],
        lists=[parse_list(x) for x in RAW_LISTS],
        form=form,
        submissions=subs,
        empty_form=parse_form(EMPTY_FORM),
        media_bytes=dict(MEDIA_BYTES),
    )


@pytest.fixture
def dataset() -> Dataset:
    return build_dataset()


@contextlib.contextmanager
def rare_gc(young: int = 100000) -> Iterator[None]:
    """The cycle collector run rarely, as a host application may set it (the exporter itself leaves
    the interpreter's settings alone): writers must free what they make without waiting for it."""
    old = gc.get_threshold()
    gc.set_threshold(young, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def run_writer(cls, root, options=None, records=(), *, run_id: str = "run1", incremental: bool = False):
    """Feed ``records`` to a new ``cls(out, options)``, close it and publish: returns (out, writer)."""
    out = OutputDir(root, run_id=run_id, incremental=incremental)
    writer = cls(out, dict(options or {}))
    try:
        for r in records:
            writer.write(r)
    except BaseException:
        writer.close(False)
        out.discard_all()
        raise
    writer.close(True)
    out.publish_all()
    return out, writer


def abandon_writer(cls, root, options=None, records=()):
    """Feed ``records`` to a new ``cls(out, options)``, then abandon the run as a failed one does
    (``close(False)``, pending files discarded): returns (out, writer)."""
    out = OutputDir(root)
    writer = cls(out, dict(options or {}))
    for r in records:
        writer.write(r)
    writer.close(False)
    out.discard_all()
    return out, writer


@pytest.fixture
def media_ref() -> MediaRef:
    return MediaRef(FORM_ID, "1001", "photo", "photo_1.jpg")
