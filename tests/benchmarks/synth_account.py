"""Build a synthetic Kizeo Forms account as an account archive.

Used for ``sample_data/`` (``python tests/benchmarks/synth_account.py sample_data --submissions 50``)
and for the benchmarks (``--submissions 100000 --tiny-media``).
Deterministic: the same arguments give the same archive content. Records are built as the service
serves them (nested ``GET /data/{d}`` shape) and written through the real archive sink, streamed.

    python tests/benchmarks/synth_account.py OUT [--submissions N] [--seed 42] [--tiny-media] [--zip]
"""
from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.connectors.archive.sink import ArchiveSink  # noqa: E402

from exporter.model import Account, Checkpoint, Media  # noqa: E402
from exporter.records import parse_form, parse_group, parse_list, parse_submission, parse_user  # noqa: E402
from exporter.sinks import RunContext  # noqa: E402

# ------------------------------------------------------------------------------------------------
# account definition
# ------------------------------------------------------------------------------------------------

USERS = [
    ("101", "mdupont", "Marie", "Dupont", "marie.dupont@example.com", "+33 6 12 34 56 78", True, "11"),
    ("102", "jmartin", "Jean", "Martin", "jean.martin@example.com", "+33 6 98 76 54 32", False, "12"),
    ("103", "lnguyen", "Linh", "Nguyễn", "linh.nguyen@example.com", "", False, "13"),
    ("104", "akowalski", "Agnieszka", "Kowalski", "a.kowalski@example.com", "+48 501 234 567", False, "12"),
    ("105", "ohaddad", "Omar", "Haddad", "omar.haddad@example.com", "", False, "13"),
    ("106", "sbernard", "Sophie", "Bernard-Lefèvre", "s.bernard@example.com", "+33 7 11 22 33 44", False, "11"),
]

GROUPS = [
    {"id": "10", "name": "Entreprise", "parent_group_id": None, "users": [], "leaders": ["101"], "children": ["11", "12"]},
    {"id": "11", "name": "Direction technique", "parent_group_id": "10", "users": ["101", "106"], "leaders": ["101"],
     "children": []},
    {"id": "12", "name": "Région Nord", "parent_group_id": "10", "users": ["102", "104"], "leaders": ["102"], "children": ["13"]},
    {"id": "13", "name": "Équipe Lille", "parent_group_id": "12", "users": ["103", "105"], "leaders": ["103"], "children": []},
]

LISTS = [
    {"id": "501", "name": "Catégories de défaut", "class": "Qualité", "update_time": "2026-09-01 08:00:00", "items": [
        "Électricité:ELEC\\Câblage:ELEC-CAB", "Électricité:ELEC\\Tableau:ELEC-TAB",
        "Plomberie:PLB\\Fuite:PLB-FUI", "Plomberie:PLB\\Évacuation:PLB-EVA",
        "Structure:STR\\Fissure:STR-FIS", "Sécurité:SEC\\Garde-corps:SEC-GC", "Autre",
    ]},
    {"id": "502", "name": "Produits", "class": "Logistique", "update_time": "2026-10-12 17:30:00", "items": [
        "Ciment 25 kg:CIM25|Sac:SAC|12.50", "Sable 0/4:SAB04|Tonne:T|38.00", "Parpaing 20x20x50:PARP20|Unité:U|1.45",
        "Tube PVC Ø100:PVC100|Mètre:M|4.20", "Gants de protection:GANTS|Paire:P|3.90",
    ]},
]

FORMS = [
    {
        "id": "1001", "name": "Inspection de chantier", "class": "Qualité", "update_time": "2026-10-02 09:15:00",
        "options": {"checkbox_output_true_value": "Oui", "checkbox_output_false_value": "Non"},
        "fields": {
            "intro": {"caption": "Informations générales", "type": "section"},
            "site": {"caption": "Chantier", "type": "text", "required": True},
            "date_visite": {"caption": "Date de la visite", "type": "date"},
            "heure_arrivee": {"caption": "Heure d'arrivée", "type": "time"},
            "conforme": {"caption": "Chantier conforme ?", "type": "checkbox"},
            "score": {"caption": "Note globale (/20)", "type": "number"},
            "position": {"caption": "Position GPS", "type": "geoloc"},
            "categorie": {"caption": "Catégorie principale", "type": "list", "list_id": "501"},
            "photos": {"caption": "Photos du chantier", "type": "photo"},
            "defauts": {"caption": "Défauts constatés", "type": "subform", "fields": {
                "description": {"caption": "Description", "type": "text"},
                "gravite": {"caption": "Gravité", "type": "choice"},
                "photo_defaut": {"caption": "Photo du défaut", "type": "photo"},
                "cout_estime": {"caption": "Coût estimé (€)", "type": "number"},
            }},
            "commentaires": {"caption": "Commentaires", "type": "textarea"},
            "signature": {"caption": "Signature de l'inspecteur", "type": "signature"},
        },
    },
    {
        "id": "1002", "name": "Bon de livraison", "class": "Logistique", "update_time": "2026-10-20 14:02:11",
        "options": {"checkbox_output_true_value": "1", "checkbox_output_false_value": "0"},
        "fields": {
            "client": {"caption": "Client", "type": "text", "required": True},
            "adresse": {"caption": "Adresse de livraison", "type": "textarea"},
            "livre_le": {"caption": "Livré le", "type": "datetime"},
            "produits": {"caption": "Produits livrés", "type": "subform", "fields": {
                "produit": {"caption": "Produit", "type": "list", "list_id": "502"},
                "quantite": {"caption": "Quantité", "type": "number"},
                "prix_unitaire": {"caption": "Prix unitaire", "type": "number"},
            }},
            "complet": {"caption": "Livraison complète", "type": "checkbox"},
            "bon_scanne": {"caption": "Bon scanné", "type": "attached"},
            "signature_client": {"caption": "Signature du client", "type": "signature"},
        },
    },
    {
        "id": "1003", "name": "Relevé de compteur", "class": "Maintenance", "update_time": "2026-08-30 07:45:00",
        "options": {},
        "fields": {
            "compteur": {"caption": "N° de compteur", "type": "barcode"},
            "index": {"caption": "Index relevé", "type": "number"},
            "releve_le": {"caption": "Relevé le", "type": "date"},
            "anomalie": {"caption": "Anomalie", "type": "checkbox"},
            "note": {"caption": "Note", "type": "text"},
        },
    },
]

SITES = ["Résidence Les Tilleuls", "Groupe scolaire Jean-Jaurès", "Entrepôt Lesquin", "Tour Horizon (lot B)",
         "Pont de la Deûle", "Clinique Saint-Éloi", "Gymnase municipal", "Immeuble Rue Nationale"]
CLIENTS = ["BTP Nord SARL", "Maçonnerie Lefebvre & Fils", "Constructions Vauban", "Ets. Ødegård", "Dupont Bâtiment",
           "Société Générale de Travaux", "Ateliers Zoë"]
DEFECTS = ["Câble dénudé près du tableau", "Fissure en façade nord", "Garde-corps manquant au 2e étage",
           "Fuite sous l'évier de la cuisine", "Évacuation bouchée", "Prise non fixée"]
COMMENTS = ["RAS.", "Chantier propre, équipe réactive.", "À revoir la semaine prochaine : accès difficile.",
            "Le chef de chantier était absent ; rappeler M. Lefèvre.", "Conforme aux plans « indice C ».",
            "Prévoir 2 × 50 m de câble 3G2,5 — urgent !", ""]


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------


def _photo(rng: random.Random, label: str, tiny: bool) -> bytes:
    from PIL import Image, ImageDraw

    w, h = (16, 12) if tiny else (160, 120)
    c1 = tuple(rng.randrange(40, 220) for _ in range(3))
    img = Image.new("RGB", (w, h), c1)
    d = ImageDraw.Draw(img)
    if not tiny:
        for i in range(0, h, 6):
            d.line([(0, i), (w, i + rng.randrange(-8, 8))], fill=tuple(max(0, x - 40) for x in c1), width=2)
        d.rectangle([8, h - 26, w - 8, h - 8], fill=(255, 255, 255))
        d.text((12, h - 24), label[:22], fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70, optimize=False)
    return buf.getvalue()


def _signature(rng: random.Random, tiny: bool) -> bytes:
    from PIL import Image, ImageDraw

    w, h = (16, 8) if tiny else (200, 80)
    img = Image.new("RGBA", (w, h), (255, 255, 255, 0))
    d = ImageDraw.Draw(img)
    pts = [(10 + i * (w - 20) // 12, h // 2 + rng.randrange(-h // 3, h // 3)) for i in range(13)]
    d.line(pts, fill=(20, 30, 120, 255), width=3 if not tiny else 1)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _pdf_attachment(text: str) -> bytes:
    body = f"BT /F1 18 Tf 40 100 Td ({text}) Tj ET".encode("latin-1", "replace")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + o + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


# ------------------------------------------------------------------------------------------------
# submissions
# ------------------------------------------------------------------------------------------------


def _ts(rng: random.Random, day0: int, i: int) -> tuple[str, str]:
    day = 1 + (day0 + i) % 28
    month = 1 + ((day0 + i) // 28) % 10
    h, m, s = 7 + i % 11, (i * 7) % 60, (i * 13) % 60
    create = f"2026-{month:02d}-{day:02d} {h:02d}:{m:02d}:{s:02d}"
    edited = rng.random() < 0.2
    update = f"2026-{month:02d}-{day:02d} {min(h + 2, 23):02d}:{m:02d}:{s:02d}" if edited else create
    return create, update


def _meta(form_id: str, sid: int, n: int, user, create: str, update: str) -> dict:
    return {
        "id": str(sid), "record_number": str(n), "form_id": form_id, "user_id": user[0],
        "create_time": create, "update_time": update, "answer_time": create, "update_answer_time": update,
        "start_time": create, "end_time": create, "update_user_id": user[0], "direction": "",
        "recipient_id": None, "history": None, "form_unique_id": f"{form_id}-{sid}", "origin_answer": "mobile",
        "user_name": f"{user[2]} {user[3]}", "first_name": user[2], "last_name": user[3], "login": user[1],
        "email": user[4], "phone": user[5],
    }


def _cell(value, ftype: str, **extra) -> dict:
    c = {"value": value, "type": ftype, "subtype": "", "hidden": False}
    c.update(extra)
    return c


def _inspection(rng, i: int, tiny: bool, media: list) -> dict:
    user = USERS[i % len(USERS)]
    sid = 700000 + i
    create, update = _ts(rng, 3, i)
    site = SITES[i % len(SITES)]
    photos = [f"photo_{sid}_{k}.jpg" for k in range(1 + i % 2)]
    if i % 9 == 4:
        photos.append(f"façade nord {sid} (2).jpg")  # real-world media names have spaces and accents
    for name in photos:
        media.append(("photos", None, None, name, "image/jpeg", _photo(rng, site, tiny)))
    rows = []
    for r in range(i % 3):
        pname = f"defaut_{sid}_{r}.jpg" if r == 0 else ""
        if pname:
            media.append(("photo_defaut", "defauts", r, pname, "image/jpeg", _photo(rng, "défaut", tiny)))
        rows.append({
            "description": _cell(DEFECTS[(i + r) % len(DEFECTS)], "text"),
            "gravite": _cell(["Mineure", "Majeure", "Critique"][(i + r) % 3], "choice"),
            "photo_defaut": _cell(pname, "photo"),
            "cout_estime": _cell(f"{rng.randrange(20, 5000)}.{rng.randrange(0, 99):02d}", "number"),
        })
    sig = f"signature_{sid}.png"
    media.append(("signature", None, None, sig, "image/png", _signature(rng, tiny)))
    lat, lon = 50.63 + rng.uniform(-0.2, 0.2), 3.06 + rng.uniform(-0.2, 0.2)
    fields = {
        "site": _cell(site, "text"),
        "date_visite": _cell(create[:10], "date"),
        "heure_arrivee": _cell(create[11:16], "time"),
        "conforme": _cell("Oui" if i % 4 else "Non", "checkbox"),
        "score": _cell(str(rng.randrange(8, 20)) + ("" if i % 3 else ".5"), "number"),
        "position": _cell(f"{lat:.6f},{lon:.6f}", "geoloc"),
        "categorie": _cell(LISTS[0]["items"][i % 6].split("\\")[-1].split(":")[0], "list",
                           path=LISTS[0]["items"][i % 6]),
        "photos": _cell(", ".join(photos), "photo", time={n: create for n in photos}),
        "defauts": _cell(rows, "subform"),
        "commentaires": _cell(COMMENTS[i % len(COMMENTS)], "textarea"),
        "signature": _cell(sig, "signature", time={sig: update}),
    }
    return {**_meta("1001", sid, i + 1, user, create, update), "fields": fields}


def _delivery(rng, i: int, tiny: bool, media: list) -> dict:
    user = USERS[(i + 2) % len(USERS)]
    sid = 800000 + i
    create, update = _ts(rng, 11, i)
    rows = []
    for r in range(1 + i % 4):
        item = LISTS[1]["items"][(i + r) % len(LISTS[1]["items"])]
        rows.append({"produit": _cell(item.split("|")[0].split(":")[0], "list"),
                     "quantite": _cell(str(1 + (i * 7 + r) % 40), "number"),
                     "prix_unitaire": _cell(item.split("|")[2], "number")})
    sig = f"sig_client_{sid}.png"
    media.append(("signature_client", None, None, sig, "image/png", _signature(rng, tiny)))
    attached = ""
    if i % 5 == 0:
        attached = f"bon_{sid}.pdf"
        media.append(("bon_scanne", None, None, attached, "application/pdf", _pdf_attachment(f"Bon de livraison {sid}")))
    client = CLIENTS[i % len(CLIENTS)]
    fields = {
        "client": _cell(client, "text"),
        "adresse": _cell(f"{10 + i} rue de la Gare\n59000 Lille", "textarea"),
        "livre_le": _cell(update[:16], "datetime"),
        "produits": _cell(rows, "subform"),
        "complet": _cell("1" if i % 6 else "0", "checkbox"),
        "bon_scanne": _cell(attached, "attached"),
        "signature_client": _cell(sig, "signature"),
    }
    return {**_meta("1002", sid, i + 1, user, create, update), "fields": fields}


def _meter(rng, i: int, tiny: bool, media: list) -> dict:
    user = USERS[(i + 4) % len(USERS)]
    sid = 900000 + i
    create, update = _ts(rng, 20, i)
    fields = {
        "compteur": _cell(f"CPT-{4000 + i * 17:06d}", "barcode"),
        "index": _cell(str(10000 + i * 321), "number"),
        "releve_le": _cell(create[:10], "date"),
        "anomalie": _cell("true" if i % 7 == 3 else "false", "checkbox"),
        "note": _cell("" if i % 3 else "Compteur difficile d'accès", "text"),
    }
    return {**_meta("1003", sid, i + 1, user, create, update), "fields": fields}


BUILDERS = {"1001": _inspection, "1002": _delivery, "1003": _meter}


def records(n_submissions: int, *, seed: int = 42, tiny_media: bool = False, source: str = "synthetic") -> Iterator:
    """The whole account as a stream of canonical records, submissions spread over the forms."""
    rng = random.Random(seed)
    yield Account(source=source, timezone="Europe/Paris", raw={"source": source, "timezone": "Europe/Paris"})
    for u in USERS:
        raw = {"id": u[0], "login": u[1], "first_name": u[2], "last_name": u[3], "email": u[4], "phone": u[5],
               "create_time": "2025-01-15 09:00:00", "admin": u[6], "form_user": True, "leader_group": None,
               "main_group_id": u[7], "user_ref1": f"MAT-{u[0]}"}
        yield parse_user(raw)
    for g in GROUPS:
        yield parse_group(g)
    for lst in LISTS:
        yield parse_list(lst)
    shares = {"1001": 0.5, "1002": 0.3, "1003": 0.2}
    for spec in FORMS:
        form = parse_form(spec)
        yield form
        count = max(1, round(n_submissions * shares[form.id]))
        last = None
        for i in range(count):
            media: list = []
            raw = BUILDERS[form.id](rng, i, tiny_media, media)
            sub = parse_submission(form, raw)
            yield sub
            by_key = {(subform, row, field, name): (ctype, data) for field, subform, row, name, ctype, data in media}
            for ref in sub.media:  # the order a source yields them in: the submission's own
                ctype, data = by_key[(ref.subform, ref.row, ref.field, ref.name)]
                yield Media.spooled(ref, ctype, iter([data]))
            last = max(last or "", sub.update_time or "")
        yield Checkpoint(form.id, last)


def build(out: str | Path, n_submissions: int, *, seed: int = 42, tiny_media: bool = False,
          zip_output: bool = False) -> Path:
    sink = ArchiveSink(out, zip_output=zip_output)
    sink.open(RunContext(run_id="synthetic", source="synthetic"))
    ok = False
    try:
        batch = []
        for r in records(n_submissions, seed=seed, tiny_media=tiny_media):
            batch.append(r)
            if len(batch) >= 500:
                sink.write(batch)
                batch = []
        sink.write(batch)
        ok = True
    finally:
        sink.close(ok)
    return Path(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--submissions", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tiny-media", action="store_true", help="16-pixel images, for big benchmark accounts")
    ap.add_argument("--zip", action="store_true")
    a = ap.parse_args()
    p = build(a.out, a.submissions, seed=a.seed, tiny_media=a.tiny_media, zip_output=a.zip)
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
