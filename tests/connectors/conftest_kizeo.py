"""Helpers for the Kizeo web-service tests (imported explicitly by tests/connectors/test_kizeo_*.py).

``rich_archive`` writes a small but hostile account archive with ``ArchiveSink`` from records
built here: sub-forms with media in rows, media names with spaces, unicode and ``%``, several
media in one field, a media referenced but missing, checkbox/date/time/datetime/geoloc/list
values, a layout field, a flat-shape submission and an empty form.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from exporter.connectors.archive.sink import ArchiveSink
from exporter.connectors.kizeo import KizeoClient, StaticToken

from exporter.model import Account, Checkpoint, Media
from exporter.pipeline import new_run_id
from exporter.records import (
    parse_form,
    parse_group,
    parse_list,
    parse_submission,
    parse_user,
)
from exporter.sinks import RunContext
from exporter.testing.fake_server import FakeKizeoServer, Faults
from tests.conftest import self_signed_cert as _self_signed_cert

TOKEN = "tok-Zq8!secret-4711"

FORM_42 = {
    "id": "42", "name": "Visite été", "class": "Qualité", "update_time": "2026-03-01 10:00:00",
    "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"},
    "fields": {
        "intro": {"caption": "Intro", "type": "section"},
        "titre": {"caption": "Titre", "type": "text", "required": True},
        "quand": {"caption": "Date", "type": "date"},
        "heure": {"caption": "Heure", "type": "time"},
        "moment": {"caption": "Moment", "type": "datetime"},
        "ok": {"caption": "Conforme", "type": "checkbox"},
        "note": {"caption": "Note", "type": "number"},
        "gps": {"caption": "Position", "type": "geoloc"},
        "niveau": {"caption": "Niveau", "type": "list", "list_id": "900"},
        "photos": {"caption": "Photos", "type": "photo"},
        "sig": {"caption": "Signature", "type": "signature"},
        "lignes": {"caption": "Lignes", "type": "subform", "fields": {
            "article": {"caption": "Article", "type": "text"},
            "qte": {"caption": "Quantité", "type": "number"},
            "vue": {"caption": "Photo", "type": "photo"},
        }},
    },
}

FORM_43 = {"id": "43", "name": "Relevé / compteur", "update_time": "2026-02-01 08:00:00",
           "fields": {"index": {"caption": "Index", "type": "number"},
                      "commentaire": {"caption": "Commentaire", "type": "textarea"}}}

FORM_44 = {"id": "44", "name": "Vide", "fields": {"x": {"type": "text"}}}


#: metadata keys the real service serves beyond what the model reads (``META_KEYS``): every
#: destination keeps them in its ``_extra`` column / cell / element
EXTRA_META = {"transform_status": "0", "pull_time": None, "contains_file": 1,
              **{f"user_ref{i}": ("réf été" if i == 1 else "") for i in range(1, 21)},
              **{f"update_user_ref{i}": "" for i in range(1, 21)},
              **{f"recipient_user_ref{i}": "" for i in range(1, 21)},
              "future_key": {"nested": [1, "deux", None], "flag": True}}


def _meta(sid: str, form_id: str, n: int, create: str, update: str | None) -> dict:
    return {"id": sid, "record_number": str(n), "form_id": form_id, "user_id": "7",
            "create_time": create, "update_time": update, "answer_time": create, "direction": "",
            "user_name": "Zoé Ünal", "first_name": "Zoé", "last_name": "Ünal", "login": "zoe", **EXTRA_META}


def _cell(value, ftype="text", **extra) -> dict:
    return {"value": value, "type": ftype, "subtype": "", "hidden": False, **extra}


def submissions_42() -> list[dict]:
    subs = []
    specs = [
        # sid, create, update, titre, photos, sig, rows
        ("1", "2026-03-01 08:00:00", "2026-03-01 08:00:00", "Premier", "photo été 1.jpg", "sig_1.png",
         [("Vis", "3", "ligne 0.jpg"), ("Écrou", "2,5", "")]),
        ("2", "2026-03-02 09:30:00", "2026-03-05 12:00:00", "Deuxième; \"quoted\"",
         "a.jpg, b 100% fini.jpg", "", []),
        ("3", "2026-03-03 11:00:00", "2026-03-03 11:00:00", "Manquant", "absent.jpg", "sig_3.png",
         [("Clou", "10", "rangée.jpg")]),
        ("4", "2026-03-04 12:00:00", None, "Jamais modifié", "", "", []),
        ("5", "2026-03-06 07:15:00", "2026-03-06 07:15:00", "Même fichier deux fois", "double.jpg", "double.jpg", []),
    ]
    for n, (sid, create, update, titre, photos, sig, rows) in enumerate(specs, 1):
        raw = _meta(sid, "42", n, create, update)
        raw["fields"] = {
            "titre": _cell(titre),
            "quand": _cell(create[:10], "date"),
            "heure": _cell(create[11:16], "time"),
            "moment": _cell(create[:16], "datetime"),
            "ok": _cell("Oui" if n % 2 else "Non", "checkbox"),
            "note": _cell(f"{n}.5", "number"),
            "gps": _cell(f"45.{n}123,-0.{n}5", "geoloc"),
            "niveau": _cell("Haut", "list", path="Niveaux:N\\Haut:H"),
            "photos": _cell(photos, "photo", time={p: create for p in photos.split(", ") if p}),
            "sig": _cell(sig, "signature"),
            "lignes": _cell([{"article": {"value": a}, "qte": {"value": q}, "vue": {"value": v}} for a, q, v in rows],
                            "subform"),
        }
        subs.append(raw)
    return subs


def submissions_43() -> list[dict]:
    nested = {**_meta("100", "43", 1, "2026-02-01 08:00:00", "2026-02-02 08:00:00"),
              "fields": {"index": _cell("12345", "number"), "commentaire": _cell("ligne 1\nligne 2 — ok")}}
    flat = {"_id": "101", "_record_number": "2", "_form_id": "43", "_user_id": "7",
            "_create_time": "2026-02-03 08:00:00", "_update_time": "2026-02-03 09:00:00",
            "_pull_time": "2026-02-04 00:00:00", "_user_ref1": "flat ref",
            "index": "12400", "commentaire": "relevé à plat"}
    return [nested, flat]


#: media bytes present in the archive; "absent.jpg" is referenced but missing
MEDIA_BYTES = {
    "photo été 1.jpg": b"\xff\xd8\xff" + bytes(range(256)) * 40,
    "sig_1.png": b"\x89PNG\r\n\x1a\n" + b"s" * 500,
    "ligne 0.jpg": b"\xff\xd8\xff" + b"row0" * 100,
    "a.jpg": b"\xff\xd8\xff" + b"A" * 1000,
    "b 100% fini.jpg": b"\xff\xd8\xff" + hashlib.sha256(b"b").digest() * 50000,  # 1.6 MB: spooled to disk
    "sig_3.png": b"\x89PNG\r\n\x1a\n" + b"3" * 10,
    "rangée.jpg": b"\xff\xd8\xff" + b"r" * 64,
    "double.jpg": b"\xff\xd8\xff" + b"dd" * 300,
}


def _ctype(name: str) -> str:
    return "image/png" if name.endswith(".png") else "image/jpeg"


#: user keys the real service serves beyond what the model reads (``USER_KEYS``)
EXTRA_USER = {"is_admin": True, "store_validator": "1", **{f"user_ref{i}": ("Siège" if i == 2 else "") for i in range(1, 21)}}

USERS = [
    {"id": "7", "login": "zoe", "first_name": "Zoé", "last_name": "Ünal", "email": "zoe@example.com",
     "admin": "1", "main_group_id": "1", **EXTRA_USER},
    {"id": "8", "login": "bob", "first_name": "Bob", "last_name": "O'Brien", "admin": "0", "main_group_id": "2"},
]
#: group keys the model does not read (``GROUP_KEYS``)
EXTRA_GROUP = {"level": 0, "group_ref1": "réf", "future_key": [1, {"a": None}]}

GROUPS = [
    {"id": "1", "name": "Siège", "parent_group_id": "0", "users": ["7"], "leaders": ["7"], "children": ["2"],
     **EXTRA_GROUP},
    {"id": "2", "name": "Équipe A", "parent_group_id": "1", "users": ["8"], "leaders": [], "children": []},
]
LISTS = [{"id": "900", "name": "Niveaux", "class": "", "update_time": "2026-01-01 00:00:00",
          "items": ["Bas:B", "Haut:H|couleur:rouge", "Niveaux:N\\Haut:H"]}]


def build_rich_archive(path: Path) -> Path:
    sink = ArchiveSink(path)
    sink.open(RunContext(run_id=new_run_id(), source="fixture"))
    try:
        sink.write([Account(source="fixture", timezone="Europe/Paris", raw={"source": "fixture", "timezone": "Europe/Paris"})])
        sink.write([parse_user(u) for u in USERS])
        sink.write([parse_group(g) for g in GROUPS])
        sink.write([parse_list(li) for li in LISTS])
        for form_raw, subs in ((FORM_42, submissions_42()), (FORM_43, submissions_43()), (FORM_44, [])):
            form = parse_form(form_raw)
            sink.write([form])
            cursor = None
            for raw in subs:
                sub = parse_submission(form, raw)
                batch = [sub]
                for ref in sub.media:
                    data = MEDIA_BYTES.get(ref.name)
                    if data is not None:
                        batch.append(Media.spooled(ref, _ctype(ref.name), iter([data[:7], data[7:]])))
                sink.write(batch)
                cursor = max(cursor or "", sub.update_time or "")
            sink.write([Checkpoint(form.id, cursor or None)])
        sink.commit()
    except BaseException:
        sink.close(False)
        raise
    sink.close(True)
    return path


def make_client(server: FakeKizeoServer, token: str = TOKEN, **kw) -> KizeoClient:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return KizeoClient(StaticToken(token), base_url=server.base_url, **kw)


def serve(archive: Path, faults: Faults | None = None, **kw) -> FakeKizeoServer:
    return FakeKizeoServer(str(archive), TOKEN, faults=faults, **kw)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (cert path, key path)."""
    return _self_signed_cert(directory, common_name="127.0.0.1")


FORM_BIG = {"id": "77", "name": "Gros formulaire", "update_time": "2026-04-01 00:00:00",
            "fields": {"n": {"caption": "N", "type": "number"},
                       "lignes": {"caption": "Lignes", "type": "subform", "fields": {"x": {"type": "text"}}}}}


def big_form_submissions(n: int = 50) -> list[dict]:
    """``n`` submissions of FORM_BIG: created 7 minutes apart from 2026-04-01 08:00:00, several in
    the same second (every fifth shares its predecessor's creation time), every third edited later
    (some edited after later ones were created), every fourth never edited (no update time)."""
    import datetime as dt

    t0 = dt.datetime(2026, 4, 1, 8, 0, 0)
    subs = []
    created = t0
    for i in range(n):
        if i % 5 != 4:
            created = t0 + dt.timedelta(minutes=7 * i)
        update = None if i % 4 == 3 else created
        if i % 3 == 0:
            update = created + dt.timedelta(hours=(i % 7) + 1, seconds=i)
        fmt = "%Y-%m-%d %H:%M:%S"
        raw = _meta(str(1000 + i), "77", i + 1, created.strftime(fmt), update.strftime(fmt) if update else None)
        raw["fields"] = {"n": _cell(str(i), "number"),
                         "lignes": _cell([{"x": {"value": f"r{i}.{j}"}} for j in range(i % 3)], "subform")}
        subs.append(raw)
    return subs


def build_big_form_archive(path: Path, n: int = 50) -> Path:
    sink = ArchiveSink(path)
    sink.open(RunContext(run_id=new_run_id(), source="fixture"))
    try:
        sink.write([Account(source="fixture", raw={"source": "fixture"})])
        form = parse_form(FORM_BIG)
        sink.write([form])
        sink.write([parse_submission(form, raw) for raw in big_form_submissions(n)])
        sink.write([Checkpoint(form.id, None)])
        sink.commit()
    except BaseException:
        sink.close(False)
        raise
    sink.close(True)
    return path
