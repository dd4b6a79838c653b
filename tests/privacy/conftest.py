"""Shared by the privacy tests: the sample account with user 104 in every role, the values that
name that person, and a search of a destination for them (decompressed: XLSX/DOCX members, PDF
text, SQLite files byte for byte, SQL tables cell by cell)."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from exporter import archive, verify
from tests.connectors.remote.conftest import (  # noqa: F401 - fixtures for these tests
    _azurite_port,
    _moto_port,
    azurite,
    ftp_server,
    password_env,
    s3_server,
    sftp_server,
    ssh_keys,
    store_tls,
    tls,
)
from tests.connectors.sql.conftest import my_db, pg_db, sqlite_db  # noqa: F401 - fixtures for these tests

PERSON = "104"
#: what names user 104 (login, e-mail, names, phone, reference)
PERSON_VALUES = ["akowalski", "a.kowalski@example.com", "Agnieszka", "Kowalski", "+48 501 234 567", "MAT-104"]
RECIPIENT_OF = "700000"  # a submission of user 101 that 104 received: it goes with 104
EDITED = "700001"  # a submission of user 102 that 104 edited last: it stays, without 104's name


@pytest.fixture
def roles_archive(sample_archive, tmp_path) -> Path:
    """``sample_data`` where user 104 also received submission 700000 and last edited 700001,
    with a reference (``user_ref1``) on every record naming them."""
    raw, out = tmp_path / "roles-edited", tmp_path / "roles-archive"
    shutil.copytree(sample_archive, raw)
    users = [json.loads(line) for line in (raw / "users.jsonl").read_text("utf-8").splitlines()]
    for f in (raw / "forms").glob("*/submissions.jsonl"):
        lines = []
        for line in f.read_text("utf-8").splitlines():
            d = json.loads(line)
            if d["user_id"] == PERSON:
                d["user_ref1"] = "MAT-104"
            if d["id"] == RECIPIENT_OF:
                d.update(recipient_id=PERSON, recipient_name="Agnieszka Kowalski", recipient_user_ref1="MAT-104")
            if d["id"] == EDITED:
                d.update(update_user_id=PERSON, update_user_name="Agnieszka Kowalski", update_user_ref1="MAT-104")
            lines.append(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
        f.write_text("\n".join(lines) + "\n", "utf-8")
    assert any(u["id"] == PERSON for u in users)
    archive(raw, out)  # written again, so that its manifest holds the edited files' sizes and hashes
    assert verify(out).ok
    return out


def person_texts(archive: Path, only_personal: bool = False) -> list[str]:
    """The person's values, and (unless ``only_personal``) the answer texts of the submissions
    that go with them that no other submission has."""
    if only_personal:
        return list(PERSON_VALUES)
    theirs, elsewhere = set(), []
    for f in sorted(archive.rglob("*.json*")):
        for line in f.read_text("utf-8").splitlines():
            d = json.loads(line) if f.name == "submissions.jsonl" else {}
            if d.get("user_id") == PERSON or d.get("recipient_id") == PERSON:
                theirs |= _texts(d.get("fields") or {})
            else:  # every other text of the account, as a JSON reader gives it
                elsewhere.append(json.dumps(json.loads(line) if f.suffix == ".jsonl" else line, ensure_ascii=False))
    haystack = "\n".join(elsewhere)
    unique = sorted(t for t in theirs if len(t) >= 8 and t not in haystack and json.dumps(t)[1:-1] not in haystack)
    assert unique, "the sample should give the person answer texts of their own"
    return PERSON_VALUES + unique


def _texts(cells: dict) -> set[str]:
    out = set()
    for cell in cells.values():
        v = cell.get("value") if isinstance(cell, dict) else cell
        if isinstance(v, list):
            for row in v:
                if isinstance(row, dict):
                    out |= _texts(row)
        elif isinstance(v, str) and not v.replace(".", "").replace(",", "").replace("-", "").isdigit():
            out.add(v)
    return out


def search_files(root: Path, needles: list[str]) -> list[str]:
    """Where in the folder ``needles`` occur: every file's bytes, the members of zip packages
    (XLSX, DOCX), the text of PDFs; ``[]`` when nowhere."""
    import pypdf

    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        blobs = [data]
        if data[:2] == b"PK":
            with zipfile.ZipFile(p) as z:
                blobs += [z.read(n) for n in z.namelist()]
        if p.suffix == ".pdf":
            blobs.append("".join(pg.extract_text() or "" for pg in pypdf.PdfReader(p).pages).encode("utf-8"))
        for n in needles:
            if any(n.encode("utf-8") in b for b in blobs):
                found.append(f"{n!r} in {p.relative_to(root)}")
    return found


def search_sql(engine: sa.Engine, schema: str | None, needles: list[str]) -> list[str]:
    """Where in the database's tables ``needles`` occur (every cell, as text)."""
    found = []
    with engine.connect() as c:
        for name in sa.inspect(c).get_table_names(schema=schema):
            t = sa.Table(name, sa.MetaData(schema=schema), autoload_with=c)
            for row in c.execute(sa.select(t)):
                for col, v in zip(t.columns, row, strict=True):
                    text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    found += [f"{n!r} in {name}.{col.name}" for n in needles if n in text]
    return found


def search_sqlite_bytes(path: Path, needles: list[str]) -> list[str]:
    """``needles`` in the database file itself (free pages included)."""
    data = Path(path).read_bytes()
    return [f"{n!r} in the bytes of {path.name}" for n in needles if n.encode("utf-8") in data]
