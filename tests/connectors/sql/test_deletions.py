"""Deletions are seen (issue 16): a submission erased on the service is marked (soft) or removed
(hard) in SQL and recorded in the files destination's deleted.csv; one that comes back is
undeleted; --max-deletions refuses a run that would delete too much with nothing changed; a
listing that fails applies no deletion; cursor mode sees deletions only with --check-deletions."""
import hashlib

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from exporter.cli import cli
from exporter.deletions import DeletionPolicy, parse_policy
from exporter.errors import ConfigError
from exporter.testing.fake_faults import Faults
from exporter.testing.fake_server import FakeKizeoServer

TOKEN = "tok-deletions-0123456789"
FORM = "1001"
FOLDER = "forms/1001-Inspection de chantier"


def export(srv, dests, *args, code=0):
    to = []
    for d in dests:  # a PostgreSQL schema: an option of that destination, after its --to
        to += ["--to", d.url, "-o", f"schema={d.schema}"] if getattr(d, "schema", None) else \
            ["--to", d.url if hasattr(d, "url") else str(d)]
    r = CliRunner().invoke(cli, ["-q", "export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", *to,
                                 "--format", "json,csv", *args], env={"KZ_TOKEN": TOKEN}, catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def main_table(db) -> str:
    with db.engine().connect() as c:
        t = sa.Table("forms", sa.MetaData(schema=db.schema), autoload_with=c)
        return c.execute(sa.select(t.c.table_name).where(t.c.form_id == FORM)).scalar_one()


def sub_tables(db) -> list[str]:
    main = main_table(db)
    return sorted(t for t in db.tables() if t.startswith(main) and t != main)


def marks(db) -> dict[str, object]:
    return {r["submission_id"] if "submission_id" in r else next(iter(r.values())): r["deleted_at"]
            for r in db.rows(main_table(db))}


def owners(db, table) -> set[str]:
    return {str(next(iter(r.values()))) for r in db.rows(table)}


def media_owners(db) -> set[str]:
    return {r["submission_id"] for r in db.rows("media") if r["form_id"] == FORM}


def snapshot(db, out) -> dict:
    """Everything a run could change: every table of the database, every file of the folder."""
    with db.engine().connect() as c:
        md = sa.MetaData(schema=db.schema)
        md.reflect(c)
        tables = {t.name: sorted(map(repr, c.execute(sa.select(t)))) for t in md.sorted_tables if t.name != "runs"}
    files = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file()}
    return {"tables": tables, "files": files}


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request):
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


def two_gone(srv, db) -> tuple[list[str], list[dict]]:
    """Erase two submissions on the service: the first with sub-form rows and media, then the
    next one with sub-form rows."""
    (sub,) = sub_tables(db)
    children, media = owners(db, sub), media_owners(db)
    with_both = sorted(children & media)
    gone = [with_both[0], sorted(children - {with_both[0]})[0]]
    return gone, [srv.delete_submission(FORM, sid) for sid in gone]


def test_soft_deletions_mark_rows_keep_children_and_come_back(sample_archive, sql, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sql, out])
        subs = sub_tables(sql)
        assert subs
        gone, saved = two_gone(srv, sql)
        had_children = {t: owners(sql, t) & set(gone) for t in subs}
        assert any(had_children.values()) and set(gone) & media_owners(sql)
        export(srv, [sql, out])
        m = marks(sql)
        assert all(m[sid] is not None for sid in gone)
        assert sum(v is not None for v in m.values()) == 2
        for t, had in had_children.items():  # soft: the sub-form and media rows stay
            assert owners(sql, t) & set(gone) == had
        assert set(gone) <= media_owners(sql)
        deleted = (out / FOLDER / "deleted.csv").read_text("utf-8").splitlines()
        assert deleted[0] == "submission_id,deleted_at" and sorted(r.split(",")[0] for r in deleted[1:]) == sorted(gone)
        assert all(f"\r\n{sid}," not in (out / FOLDER / "submissions.csv").read_bytes().decode() for sid in gone)
        assert (out / FOLDER / "submissions" / f"{gone[0]}.json").exists()  # soft: its own files stay

        srv.put_submission(FORM, saved[0])  # restored on the service
        export(srv, [sql, out])
        m = marks(sql)
        assert m[gone[0]] is None and m[gone[1]] is not None
        deleted = (out / FOLDER / "deleted.csv").read_text("utf-8").splitlines()
        assert [r.split(",")[0] for r in deleted[1:]] == [gone[1]]
        assert f"\r\n{gone[0]}," in (out / FOLDER / "submissions.csv").read_bytes().decode()


def test_hard_deletions_remove_rows_children_media_and_files(sample_archive, sql, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sql, out])
        gone, _ = two_gone(srv, sql)
        assert (out / FOLDER / "media" / gone[0]).is_dir()
        export(srv, [sql, out], "--deletions", "hard")
        assert not set(gone) & set(marks(sql))
        assert all(v is None for v in marks(sql).values())
        for t in sub_tables(sql):
            assert not owners(sql, t) & set(gone)
        assert not set(gone) & media_owners(sql)
        assert media_owners(sql)  # the others' media stay
        deleted = (out / FOLDER / "deleted.csv").read_text("utf-8")
        assert all(sid in deleted for sid in gone)
        assert not (out / FOLDER / "submissions" / f"{gone[0]}.json").exists()
        assert not (out / FOLDER / "media" / gone[0]).exists()
        assert (out / FOLDER / "submissions").is_dir()


def test_too_many_deletions_refuse_the_run_and_change_nothing(sample_archive, sql, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sql, out])
        two_gone(srv, sql)
        before = snapshot(sql, out)
        r = export(srv, [sql, out], "--max-deletions", "1", code=1)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "--max-deletions" in lines[0] and "form 1001" in lines[0], r.output
        assert snapshot(sql, out) == before
        export(srv, [sql, out], "--max-deletions", "5%", code=1)  # 5% of 25 is 1
        assert snapshot(sql, out) == before
        export(srv, [sql, out], "--max-deletions", "2")
        assert sum(v is not None for v in marks(sql).values()) == 2


def test_a_listing_that_fails_applies_no_deletion(sample_archive, sqlite_db, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sqlite_db, out])
        two_gone(srv, sqlite_db)
        srv.faults = Faults(fail_paths={"/forms/1001/data/all": 500}, max_in_a_row=0)
        export(srv, [sqlite_db, out], code=1)
        assert all(v is None for v in marks(sqlite_db).values())
        assert not (out / FOLDER / "deleted.csv").exists()


def test_cursor_mode_sees_deletions_only_when_asked(sample_archive, sqlite_db, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sqlite_db, out])
        gone, _ = two_gone(srv, sqlite_db)
        export(srv, [sqlite_db, out], "--incremental", "cursor")
        assert all(v is None for v in marks(sqlite_db).values())
        assert not (out / FOLDER / "deleted.csv").exists()
        listed = srv.request_count("*/data/all")
        export(srv, [sqlite_db, out], "--incremental", "cursor", "--check-deletions")
        # ids only: one listing per form for the check before anything is written, one with the form
        assert srv.request_count("*/data/all") == listed + 6
        m = marks(sqlite_db)
        assert {k for k, v in m.items() if v is not None} == set(gone)
        assert sorted(gone) == [r.split(",")[0] for r in (out / FOLDER / "deleted.csv").read_text().splitlines()[1:]]


def test_check_deletions_needs_an_incremental_run(sample_archive, tmp_path):
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--to", str(tmp_path / "o"), "--check-deletions"])
    assert r.exit_code == 2 and "--check-deletions" in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--to", str(tmp_path / "o"),
                                 "--max-deletions", "ten"])
    assert r.exit_code == 2 and "--max-deletions" in r.output
    assert not (tmp_path / "o").exists()


def test_policy_limits():
    assert parse_policy() == DeletionPolicy("soft", None, 10.0)
    assert parse_policy("hard", "50") == DeletionPolicy("hard", 50, None)
    assert parse_policy(None, "5%").limit(25) == 1
    assert parse_policy().limit(25) == 2 and parse_policy().limit(5) == 0
    for bad in ("-1", "x", "150%", "%"):
        with pytest.raises(ConfigError):
            parse_policy(None, bad)


def test_a_form_gone_from_the_service_is_marked_never_emptied(sample_archive, sql, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sql, out])
        kept = (out / "forms" / "1002-Bon de livraison" / "submissions.csv").read_bytes()
        srv.store.forms_index[:] = [f for f in srv.store.forms_index if str(f["id"]) != "1002"]
        export(srv, [sql, out])
        forms = {r["form_id"]: r["deleted_at"] for r in sql.rows("forms")}
        assert forms["1002"] is not None and forms["1001"] is None and forms["1003"] is None
        with sql.engine().connect() as c:
            t = sa.Table("forms", sa.MetaData(schema=sql.schema), autoload_with=c)
            table = c.execute(sa.select(t.c.table_name).where(t.c.form_id == "1002")).scalar_one()
        assert len(sql.rows(table)) == 15 and all(r["deleted_at"] is None for r in sql.rows(table))
        gone = (out / "deleted_forms.csv").read_text("utf-8").splitlines()
        assert gone == ["form_id,name", "1002,Bon de livraison"]
        assert (out / "forms" / "1002-Bon de livraison" / "submissions.csv").read_bytes() == kept
        assert not (out / "forms" / "1002-Bon de livraison" / "deleted.csv").exists()


def test_a_refusal_for_a_later_form_changes_nothing_of_the_forms_before_it(sample_archive, sql, tmp_path):
    out = tmp_path / "out"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        export(srv, [sql, out])
        sid, first = next(iter(srv.store.submissions(FORM).items()))
        edited = {**first, "update_time": "2026-06-01 12:00:00"}
        srv.put_submission(FORM, edited)  # form 1001 changed, read before 1003
        for gone in list(srv.store.submissions("1003"))[:2]:  # 2 of 10: over the default 10%
            srv.delete_submission("1003", gone)
        before = snapshot(sql, out)
        r = export(srv, [sql, out], code=1)
        assert "form 1003" in r.output and "--max-deletions" in r.output
        assert snapshot(sql, out) == before


def test_an_archive_replayed_in_full_is_the_complete_listing(sample_archive, sqlite_db, tmp_path):
    """An archive taken after two deletions, replayed in full over an export of the earlier one."""
    later = tmp_path / "later"
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        gone = sorted(srv.store.submissions(FORM))[:2]
        for sid in gone:
            srv.delete_submission(FORM, sid)
        r = CliRunner().invoke(cli, ["-q", "archive", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--out",
                                     str(later)], env={"KZ_TOKEN": TOKEN})
        assert r.exit_code == 0, r.output
    for archive in (sample_archive, later):
        r = CliRunner().invoke(cli, ["-q", "export", "-s", str(archive), "--to", sqlite_db.url])
        assert r.exit_code == 0, r.output
    assert {k for k, v in marks(sqlite_db).items() if v is not None} == set(gone)
