"""``exporter forget`` over SQLite, PostgreSQL, MariaDB and files destinations: a dry run changes
nothing; --apply leaves no trace of the person anywhere (their values, and the answer texts of the
submissions that went with them), keeps everyone else's data, writes one audit line that names
nobody, and can be run again."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from exporter.cli import cli
from tests.privacy.conftest import (
    EDITED,
    PERSON,
    PERSON_VALUES,
    RECIPIENT_OF,
    person_texts,
    search_files,
    search_sql,
    search_sqlite_bytes,
)
from tests.test_plugins import plugin  # noqa: F401 - a fixture for these tests


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@dataclass
class Dest:
    """A destination of one test: its --to and options, and how to search it."""

    kind: str
    to: list[str]
    path: Path | None = None  # files folder or SQLite file
    engine: sa.Engine | None = None
    schema: str | None = None
    formats: str = "json,csv,xlsx,xml"
    extra: list[str] = field(default_factory=list)

    def search(self, needles: list[str]) -> list[str]:
        if self.kind == "files":
            return search_files(self.path, needles)
        found = search_sql(self.engine, self.schema, needles)
        if self.kind == "sqlite":
            found += search_sqlite_bytes(self.path, needles)
        return found

    def submission_ids(self) -> set[str]:
        if self.kind == "files":
            ids = set()
            for f in self.path.glob("forms/*/submissions.jsonl"):
                ids |= {json.loads(line)["id"] for line in f.read_text("utf-8").splitlines()}
            return ids
        with self.engine.connect() as c:
            forms = sa.Table("forms", sa.MetaData(schema=self.schema), autoload_with=c)
            ids = set()
            for (name,) in c.execute(sa.select(forms.c.table_name)):
                t = sa.Table(name, sa.MetaData(schema=self.schema), autoload_with=c)
                ids |= set(c.execute(sa.select(t.c.submission_id)).scalars())
            return ids

    def submission_meta(self, sid: str) -> dict:
        if self.kind == "files":
            for f in self.path.glob("forms/*/submissions.jsonl"):
                for line in f.read_text("utf-8").splitlines():
                    d = json.loads(line)
                    if d["id"] == sid:
                        return {**d["meta"], **d["extra"]}
            raise KeyError(sid)
        with self.engine.connect() as c:
            forms = sa.Table("forms", sa.MetaData(schema=self.schema), autoload_with=c)
            for (name,) in c.execute(sa.select(forms.c.table_name)):
                t = sa.Table(name, sa.MetaData(schema=self.schema), autoload_with=c)
                row = c.execute(sa.select(t).where(t.c.submission_id == sid)).first()
                if row is not None:
                    m = dict(row._mapping)
                    return {**m, **json.loads(m.get("extra_keys") or "{}")}
        raise KeyError(sid)


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "files"])
def dest(request, tmp_path) -> Dest:
    kind = request.param
    if kind == "files":
        return Dest("files", [tmp_path / "files"], path=tmp_path / "files")
    db = request.getfixturevalue({"sqlite": "sqlite_db", "postgresql": "pg_db", "mysql": "my_db"}[kind])
    to = [db.url] + [x for k, v in db.options.items() for x in ("-o", f"{k}={v}")]
    path = Path(db.url.split(":///", 1)[1]) if kind == "sqlite" else None
    return Dest(kind, to, path=path, engine=db.engine(), schema=db.schema)


def export(source: Path, d: Dest) -> None:
    r = invoke("-q", "export", "-s", source, "--to", *d.to, *(["--format", d.formats] if d.kind == "files" else []))
    assert r.exit_code == 0, r.output


def test_forget_a_user_leaves_no_trace(roles_archive, dest, tmp_path):
    export(roles_archive, dest)
    needles = person_texts(roles_archive)
    assert len(dest.search(needles)) > 20
    before = dest.submission_ids()
    assert len(before) == 50

    r = invoke("forget", "--to", *dest.to, "--user", PERSON)  # dry run
    assert r.exit_code == 0, r.output
    assert "would erase 1 user, 1 group membership, 9 submissions" in r.output
    assert "dry run: nothing was changed" in r.output
    assert "counting " in r.stderr and "erasing " not in r.stderr  # progress, each step as it starts
    assert dest.submission_ids() == before and len(dest.search(needles)) > 20

    audit = tmp_path / "audit.jsonl"
    r = invoke("forget", "--to", *dest.to, "--user", PERSON, "--apply", "--audit", audit, "--reference", "T-17")
    assert r.exit_code == 0, r.output
    assert "erased 1 user, 1 group membership, 9 submissions" in r.output
    assert "counting " in r.stderr and "erasing " in r.stderr
    assert dest.search(needles) == []
    # everyone else's data stays; the submission 104 only edited stays, without their name
    after = dest.submission_ids()
    assert len(after) == 41 and RECIPIENT_OF not in after and EDITED in after
    edited = dest.submission_meta(EDITED)
    assert edited["user_id"] == "102" and edited.get("update_user_name") in (None, "")
    assert "update_user_ref1" not in edited and edited["user_name"] == "Jean Martin"
    assert dest.search(["jmartin", "Jean Martin", "marie.dupont@example.com"]) != []

    (line,) = audit.read_text("utf-8").splitlines()
    entry = json.loads(line)
    assert entry["request"] == {"subject": "user", "only_personal": False, "reference": "T-17"}
    assert entry["erased"]["submissions"] == 9 and entry["erased"]["users"] == 1
    assert not any(v in line for v in PERSON_VALUES) and f'"{PERSON}"' not in line
    own = _own_audit(dest)
    assert [json.loads(x)["erasure_id"] for x in own] == [entry["erasure_id"]]

    r = invoke("forget", "--to", *dest.to, "--user", PERSON, "--apply")  # again: nothing left to erase
    assert r.exit_code == 0 and "erased nothing" in r.output, r.output
    assert dest.submission_ids() == after


def _own_audit(dest: Dest) -> list[str]:
    if dest.kind == "files":
        return (dest.path / ".exporter" / "erasures.jsonl").read_text("utf-8").splitlines()
    with dest.engine.connect() as c:
        t = sa.Table("erasures", sa.MetaData(schema=dest.schema), autoload_with=c)
        return list(c.execute(sa.select(t.c.line)).scalars())


def test_only_personal_columns(roles_archive, dest):
    export(roles_archive, dest)
    r = invoke("forget", "--to", *dest.to, "--user", PERSON, "--only-personal", "--apply")
    assert r.exit_code == 0, r.output
    assert "personal values of the user" in r.output
    assert dest.search(PERSON_VALUES) == []
    assert len(dest.submission_ids()) == 50  # rows stay, their answers too
    answers = [t for t in person_texts(roles_archive) if t not in PERSON_VALUES]
    assert dest.search(answers[:3]) != []
    assert dest.submission_meta(RECIPIENT_OF)["recipient_id"] == PERSON  # ids stay


@pytest.mark.parametrize("kind", ["sqlite", "files"])
def test_forget_submissions_by_id(roles_archive, tmp_path, kind):
    if kind == "files":
        dest = Dest("files", [tmp_path / "files"], path=tmp_path / "files", formats="json,csv,xlsx,pdf")
    else:
        db = tmp_path / "x.db"
        dest = Dest("sqlite", [f"sqlite:///{db}"], path=db, engine=sa.create_engine(f"sqlite:///{db}"))
    export(roles_archive, dest)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# erased on request\n800001\n")
    r = invoke("forget", "--to", *dest.to, "--submission", "700002", "--submissions-file", ids_file, "--apply")
    assert r.exit_code == 0, r.output
    assert "erased 2 submissions" in r.output
    assert dest.submission_ids() == {i for i in _all_ids(roles_archive) if i not in ("700002", "800001")}
    if kind == "files":
        form = next((tmp_path / "files" / "forms").glob("1001-*"))
        assert not (form / "media" / "700002").exists() and not (form / "reports" / "700002.pdf").exists()
        assert not (form / "submissions" / "700002.json").exists() and (form / "submissions" / "700003.json").exists()
        rows = (form / "subform-defauts.csv").read_text("utf-8").splitlines()
        assert not any(row.startswith("700002,") for row in rows) and len(rows) > 5
    else:
        with dest.engine.connect() as c:
            assert c.exec_driver_sql("SELECT COUNT(*) FROM media WHERE submission_id IN ('700002', '800001')"
                                     ).scalar() == 0
            assert c.exec_driver_sql("SELECT COUNT(*) FROM media").scalar() > 0


def _all_ids(archive: Path) -> set[str]:
    return {json.loads(line)["id"] for f in (archive / "forms").glob("*/submissions.jsonl")
            for line in f.read_text("utf-8").splitlines()}


def test_files_made_again_are_those_an_export_without_the_person_makes(roles_archive, tmp_path):
    """The aggregates and people files a forget writes again are byte for byte those of an
    export of the same account without the person's submissions."""
    dest = Dest("files", [tmp_path / "a"], path=tmp_path / "a")
    export(roles_archive, dest)
    assert invoke("forget", "--to", tmp_path / "a", "--submission", "700002", "--apply").exit_code == 0
    f = roles_archive / "forms" / "1001" / "submissions.jsonl"  # the same account (same path) without it
    f.write_text("".join(line + "\n" for line in f.read_text("utf-8").splitlines()
                         if json.loads(line)["id"] != "700002"), "utf-8")
    export(roles_archive, Dest("files", [tmp_path / "b"], path=tmp_path / "b"))
    for name in ("submissions.csv", "submissions.jsonl", "submissions.xlsx", "submissions.xml",
                 "subform-defauts.csv"):
        a = next((tmp_path / "a" / "forms").glob("1001-*")) / name
        b = next((tmp_path / "b" / "forms").glob("1001-*")) / name
        assert a.read_bytes() == b.read_bytes(), name
    for name in ("users.csv", "users.json", "users.xlsx", "groups.json", "group_members.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.usefixtures("plugin")
def test_a_destination_that_cannot_erase_stops_everything_first(sample_archive, tmp_path):
    db = tmp_path / "x.db"
    assert invoke("-q", "export", "-s", sample_archive, "--to", f"sqlite:///{db}").exit_code == 0
    # (every built-in destination can erase: a plugin's that offers no eraser cannot)
    r = invoke("forget", "--to", f"sqlite:///{db}", "--to", f"memo://{tmp_path / 'memo.json'}", "--user", PERSON,
               "--apply")
    assert r.exit_code == 2
    assert "cannot erase data" in r.output and "Traceback" not in r.output
    assert search_sql(sa.create_engine(f"sqlite:///{db}"), None, ["akowalski"]) != []


@pytest.mark.parametrize("args,message", [
    ([], "needs either --user ID or --submission ID"),
    (["--user", "104", "--submission", "1"], "needs either --user ID or --submission ID"),
    (["--submission", "1", "--only-personal"], "--only-personal is for --user"),
    (["--user", "104", "--state-dir", "st"], "--state-dir holds an account's backups index: give --account"),
])
def test_bad_requests_are_usage_errors(tmp_path, args, message):
    r = invoke("forget", "--to", tmp_path / "nowhere", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "nowhere").exists()


def test_no_destination_and_no_store(tmp_path):
    r = invoke("forget", "--user", "104")
    assert r.exit_code == 2 and "no destination" in r.output
    (tmp_path / "plain").mkdir()
    r = invoke("forget", "--to", tmp_path / "plain", "--user", "104")
    assert r.exit_code == 2 and "no .exporter/store.sqlite here" in r.output


def test_media_dir_files_are_erased_too(sample_archive, tmp_path):
    db, media = tmp_path / "x.db", tmp_path / "media"
    r = invoke("-q", "export", "-s", sample_archive, "--to", f"sqlite:///{db}", "-o", f"media_dir={media}")
    assert r.exit_code == 0, r.output
    assert (media / "1002" / "800001").is_dir()
    r = invoke("forget", "--to", f"sqlite:///{db}", "--user", PERSON, "--apply")
    assert r.exit_code == 2 and "-o media_dir=DIR" in r.output  # refused: its files would stay
    r = invoke("forget", "--to", f"sqlite:///{db}", "-o", f"media_dir={media}", "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "15 media files" in r.output, r.output
    assert not (media / "1002" / "800001").exists() and (media / "1002" / "800000").is_dir()


def test_a_folder_being_exported_into_is_left_alone(sample_archive, tmp_path):
    from exporter.fsutil import claim, release

    out = tmp_path / "files"
    export(sample_archive, Dest("files", [out], path=out))
    marker = claim(out)  # a live export of this host is writing there
    try:
        r = invoke("forget", "--to", out, "--user", PERSON, "--apply")
        assert r.exit_code == 1 and "is writing into" in r.output, r.output
    finally:
        release(marker)
    assert not (out / ".exporter" / "forget.json").exists()
    assert search_files(out, ["akowalski"]) != []


def test_files_of_submissions_gone_from_the_service_go_too(roles_archive, tmp_path):
    """A submission of the person's erased in Kizeo left the aggregates but kept its own files
    (--deletions soft): its JSON file tells whose it is, and forget removes them."""
    out = tmp_path / "files"
    export(roles_archive, Dest("files", [out], path=out))
    f = roles_archive / "forms" / "1002" / "submissions.jsonl"
    f.write_text("".join(line + "\n" for line in f.read_text("utf-8").splitlines()
                         if json.loads(line)["id"] != "800001"), "utf-8")
    export(roles_archive, Dest("files", [out], path=out))  # 800001 is gone from the service
    form = next((out / "forms").glob("1002-*"))
    assert "800001" in (form / "deleted.csv").read_text("utf-8") and (form / "media" / "800001").is_dir()
    r = invoke("forget", "--to", out, "--user", PERSON, "--apply")
    assert r.exit_code == 0 and "9 submissions" in r.output, r.output
    assert not (form / "media" / "800001").exists() and not (form / "submissions" / "800001.json").exists()
    assert search_files(out, PERSON_VALUES) == []


def test_a_users_long_cells_go_with_them(sample_archive, tmp_path):
    """A user value too long for a workbook's cell goes to ``long-values/user-<id>-<column>.txt``:
    erasing the user removes them all (not only the personal columns')."""
    from exporter import archive, verify

    raw, edited = tmp_path / "raw", tmp_path / "edited"
    shutil.copytree(sample_archive, raw)
    marker = "BIOGRAPHY-104 " + "x" * 40_000
    users = [json.loads(line) for line in (raw / "users.jsonl").read_text("utf-8").splitlines()]
    for u in users:
        if u["id"] == PERSON:
            u["biography"] = marker  # a key the users table keeps in _extra
    (raw / "users.jsonl").write_text("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in users), "utf-8")
    archive(raw, edited)
    assert verify(edited).ok
    files = tmp_path / "files"
    assert invoke("-q", "export", "-s", edited, "--to", files, "--format", "json,xlsx").exit_code == 0
    assert sorted(p.name for p in (files / "long-values").glob(f"user-{PERSON}-*")) == [f"user-{PERSON}-_extra.txt"]
    r = invoke("forget", "--to", files, "--user", PERSON, "--apply")
    assert r.exit_code == 0, r.output
    assert list((files / "long-values").glob(f"user-{PERSON}-*")) == []
    assert search_files(files, ["BIOGRAPHY-104"]) == []
