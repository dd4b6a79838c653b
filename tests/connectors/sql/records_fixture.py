"""Records for the SQL sink tests, built with the real parsers (``exporter.records``)."""
from __future__ import annotations

from exporter.model import Checkpoint, Media
from exporter.records import (
    parse_form,
    parse_group,
    parse_list,
    parse_submission,
    parse_user,
)
from exporter.sinks import RunContext
from tests.conftest import drive_sink

FORM_ID = "1001"


def form_payload(extra_fields: dict | None = None, drop: tuple[str, ...] = (), retype: dict | None = None) -> dict:
    fields = {
        "nom": {"type": "text", "caption": "Nom du client"},
        "quantite": {"type": "number", "caption": "Quantité"},
        "jour": {"type": "date"},
        "heure": {"type": "time"},
        "quand": {"type": "datetime"},
        "valide": {"type": "checkbox"},
        "position": {"type": "geoloc"},
        "photo": {"type": "photo"},
        "titre": {"type": "section"},
        "lignes": {"type": "subform", "fields": {
            "article": {"type": "text"}, "qte": {"type": "number"}, "vue": {"type": "photo"},
        }},
    }
    for k in drop:
        fields.pop(k, None)
    for k, t in (retype or {}).items():
        fields[k] = {"type": t}
    fields.update(extra_fields or {})
    return {"id": FORM_ID, "name": "Visite de chantier", "fields": fields}


def form(**kw):
    return parse_form(form_payload(**kw))


def submission(f, sid: str = "1", *, nom: str = "Dupont", rows: int = 2, update: str = "2024-03-01 10:00:00",
               extra: dict | None = None):
    fields = {
        "nom": {"value": nom},
        "quantite": {"value": "12,5"},
        "jour": {"value": "2024-02-29"},
        "heure": {"value": "08:30"},
        "quand": {"value": "2024-02-29 08:30:15"},
        "valide": {"value": "1"},
        "position": {"value": "45.18,5.72"},
        "photo": {"value": f"p{sid}.jpg"},
        "lignes": {"value": [
            {"article": {"value": f"art{i}"}, "qte": {"value": str(i + 1)}, "vue": {"value": f"v{sid}_{i}.jpg"}}
            for i in range(rows)
        ]},
    }
    fields.update(extra or {})
    return parse_submission(f, {"id": sid, "record_number": sid, "user_id": "u1",
                                "create_time": "2024-03-01 09:00:00", "update_time": update,
                                "answer_time": "2024-03-01 09:00:00", "fields": fields})


def media_for(sub, payload: bytes = b"\x89PNG fake image"):
    return [Media.spooled(ref, "image/jpeg", iter([payload + ref.name.encode()])) for ref in sub.media]


def account_records():
    return [
        parse_user({"id": "u1", "login": "jdupont", "first_name": "Jean", "last_name": "Dupont", "admin": "1"}),
        parse_user({"id": "u2", "login": "amartin", "first_name": "Anne", "last_name": "Martin"}),
        parse_group({"id": "g1", "name": "Équipe Nord", "users": [{"id": "u1"}, {"id": "u2"}], "leaders": ["u1"]}),
        parse_list({"id": "l1", "name": "Articles", "items": ["Vis:V1|Acier:AC\\M6:6", "Écrou:E1", "plain"]}),
    ]


def full_stream(f=None, n: int = 3, **sub_kw):
    f = f or form()
    recs: list = [*account_records(), f]
    last = None
    for i in range(1, n + 1):
        s = submission(f, str(i), **sub_kw)
        recs.append(s)
        recs.extend(media_for(s))
        last = s.update_time
    recs.append(Checkpoint(f.id, last))
    return recs


def ctx(run: str = "20240301T100000Z") -> RunContext:
    return RunContext(run_id=run, source="test://account")


def run_export(sink, records, run: str = "20240301T100000Z", batch: int = 4) -> None:
    """Drive a sink the way the pipeline does: open, write+commit per batch, close."""
    drive_sink(sink, ctx(run), records, batch)
