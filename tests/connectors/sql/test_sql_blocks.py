"""Archive replays into PostgreSQL written straight from the served payloads (``SubmissionBlock``,
``_speedups.block_text``) against the same replay written from the parsed records.

An archive holding every shape the block path must either write exactly as the records' path does
or hand back to it (hostile texts, numbers that do and do not write back as served, multi-name and
missing media, sub-form media, the flat shape, a submission twice, cells the C loop leaves to
Python, non-ASCII ids) is exported twice into one database, in full both times (the second run
merges every key), once with blocks and once without: the tables must be equal, row for row."""
from __future__ import annotations

import pytest

from connectors.archive import ArchiveSink, ArchiveSource
from connectors.sql import schema
from connectors.sql.sink import SqlSink
from exporter.model import Checkpoint, Media, SubmissionBlock
from exporter.pipeline import run
from exporter.records import parse_submission
from exporter.sinks import RunContext
from tests.conftest import SAMPLE

from .conftest import PG_ADMIN, _my_db, _pg_schema
from .records_fixture import submission
from .test_sql_sink import sink_for, snapshot
from .test_sql_speedups import C, _stream

pytestmark = pytest.mark.skipif(C is None, reason="the C module exporter._speedups is not built")

MY_URL = "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"


class _Records:
    description = "test records"

    def __init__(self, records: list):
        self._records = records

    def records(self, state=None):
        return iter(self._records)

    def acknowledge(self, batch):
        pass

    def close(self):
        pass


def _edge_records() -> list:
    """The sample account and hostile values (test_sql_speedups), then more submissions of the
    same form with the shapes above."""
    sample = list(ArchiveSource(SAMPLE).records({}))
    recs = _stream()  # the sample account, then the fixture form (the id of a sample form) and hostile values
    f = [r for r in recs if r.kind == "form"][-1]

    def other_form(r) -> bool:
        fid = r.id if r.kind == "form" else r.ref.form_id if r.kind == "media" else getattr(r, "form_id", None)
        return fid != f.id
    recs = [r for r in recs[:len(sample)] if other_form(r)] + [r for r in recs[len(sample):] if not other_form(r)]
    assert recs[-1].kind == "checkpoint"

    def sub(sid, **kw):
        return submission(f, sid, **kw)

    edge = [
        sub("n1", extra={"quantite": {"value": "0.0000001"}, "photo": {"value": " a.jpg, b.jpg,,c.jpg "},
                         "position": {"value": "45.1;5.2"}}),
        sub("n2", extra={"quantite": {"value": "0.0000000"}, "position": {"value": "x,y"}}),
        sub("n3", extra={"quantite": {"value": "-0.000001"}, "valide": {"value": "oui"}}),
        sub("n4", extra={"quantite": {"value": "007"}, "heure": {"value": "8:30"}}),
        sub("n5", extra={"quantite": {"value": "123456789012345678901234567890"}}),
        sub("n6", extra={"quantite": {"value": "1e5"}, "jour": {"value": "29/02/2024"}}),
        sub("o1", extra={"nom": ["a", "list"]}),  # a shape the C loop leaves to Python
        sub("o2", extra={"quantite": {"value": 12.5}, "nom": {"value": 7}}),
        sub("é1", nom="ünïcödé"),
        parse_submission(f, {"_id": "flat1", "_update_time": "2024-03-02 09:00:00", "nom": "à plat",
                             "quantite": "3", "photo": "flat.jpg", "_user_id": 5,
                             "lignes": [{"article": "x", "qte": "1", "vue": "fv.jpg"}]}),
        sub("d1", nom="first version"),
        sub("d1", nom="second version", update="2024-03-03 10:00:00"),  # the same submission again
    ]
    out = recs[:-1]
    for s in edge:
        out.append(s)
        media = [Media.spooled(ref, "" if ref.name == "b.jpg" else "image/jpeg", iter([ref.name.encode()]))
                 for ref in s.media]
        out.extend(m for m in media if m.ref.name != "c.jpg")  # c.jpg: never downloaded
    out.append(Checkpoint(f.id, "2024-03-03 10:00:00"))
    return out


@pytest.fixture()
def edge_archive(tmp_path):
    path = tmp_path / "edge"
    run(_Records(_edge_records()), [ArchiveSink(path)], RunContext(run_id="20240301T100000Z", source="test"))
    return path


@pytest.fixture(params=["postgresql", "mysql"])
def two_dbs(request):
    """Two empty destinations of one kind: PostgreSQL (COPY) or MariaDB (LOAD DATA LOCAL INFILE)."""
    if request.param == "postgresql":
        first = request.getfixturevalue("pg_db")
        gen = _pg_schema("postgresql", PG_ADMIN)
        yield first, next(gen)
        next(gen, None)
        return
    with _my_db("mysql", MY_URL) as a, _my_db("mysql", MY_URL) as b:
        yield a, b


_TAKES = SqlSink.takes_blocks


def _export(db, archive, blocks: bool, monkeypatch, run_id: str) -> None:
    monkeypatch.setattr(SqlSink, "takes_blocks", _TAKES if blocks else property(lambda sink: False))
    run(ArchiveSource(archive), [sink_for(db)], RunContext(run_id=run_id, source="test"), batch_size=4)


def test_blocks_write_what_records_write(two_dbs, edge_archive, monkeypatch):
    pg_db, pg_db2 = two_dbs
    spy = {"blocks": 0, "declined": 0, "left": 0, "media": 0}
    real = schema._speedups

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def block_text(*args):
            got = real.block_text(*args)
            spy["blocks"] += 1
            if got is None:
                spy["declined"] += 1
            else:
                spy["left"] += len(got[2])
                spy["media"] += got[3]
            return got

    monkeypatch.setattr(schema, "_speedups", Spy())
    _export(pg_db, edge_archive, True, monkeypatch, "20240301T100000Z")
    assert sink_for(pg_db).profile.dialect == pg_db.kind
    first = snapshot(pg_db)
    assert spy["blocks"] > 4 and spy["declined"] >= 1 and spy["left"] >= 1 and spy["media"] > 20, spy
    _export(pg_db, edge_archive, True, monkeypatch, "20240301T110000Z")  # every key exists: merged
    assert snapshot(pg_db) == first
    _export(pg_db2, edge_archive, False, monkeypatch, "20240301T100000Z")
    assert snapshot(pg_db2) == first
    assert sum(len(rows) for rows in first.values()) > 150
    media = {r["name"]: r for r in first["media"]}
    assert {"a.jpg", "b.jpg", "flat.jpg", "fv.jpg"} <= set(media)
    assert "c.jpg" not in media and media["b.jpg"]["content_type"] == "application/octet-stream"


def test_block_records_are_the_sources_records(edge_archive):
    """A block stands for the records the source yields without blocks, in the same order."""
    plain = [r for r in ArchiveSource(edge_archive).records({}) if r.kind in ("submission", "media")]
    src = ArchiveSource(edge_archive)
    src.use_blocks(3)
    blocks = [r for r in src.records({}) if r.kind == "submissions"]
    assert all(isinstance(b, SubmissionBlock) and 0 < len(b) <= 3 for b in blocks)
    expanded = [x for b in blocks for x in b.records()]
    assert [(r.kind, getattr(r, "id", None) or r.ref) for r in expanded] == \
        [(r.kind, getattr(r, "id", None) or r.ref) for r in plain]
    counts = [b.media_counts() for b in blocks]
    assert sum(n for n, _ in counts) == sum(1 for r in plain if r.kind == "media")


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_block_text_is_the_records_text(edge_archive, dialect):
    """Byte for byte: block_text writes the lines submission_rows, media_row and copy_bytes make
    from the block's records (the tables could be equal with different texts, e.g. 1E-7 and
    0.0000001)."""
    from connectors.sql.capabilities import profile_for
    from connectors.sql.loaders import MYSQL_TEXT, PG_TEXT, copy_bytes
    from connectors.sql.planner import NamePlanner
    from connectors.sql.schema import MEDIA_COLUMNS, block_text, media_row, plan_form, submission_rows

    profile = profile_for(dialect)
    fmt = PG_TEXT if dialect == "postgresql" else MYSQL_TEXT
    src = ArchiveSource(edge_archive)
    src.use_blocks(4)
    plans: dict = {}
    checked = 0
    for r in src.records({}):
        if r.kind == "form":
            plans[r.id] = plan_form(r, [], NamePlanner(profile), profile, set(), "run")
        if r.kind != "submissions":
            continue
        plan = plans[r.form_id]
        got = block_text(plan, profile, r, fmt, copy_bytes)
        if got is None:  # a submission twice: the records' path
            assert len(set(r.sids)) < len(r.sids)
            continue
        spec, data, media = got
        want: list[list[dict]] = [[] for _ in spec.parts]
        index = {p: i for i, p in enumerate(spec.parts)}
        media_rows = []
        for x in r.records():
            if x.kind == "media":
                media_rows.append(media_row(x, x.size, x.sha256, None))
                continue
            parent, children = submission_rows(plan, x, profile)
            for part, row in parent.items():
                want[index[part]].append(row)
            for part, rows in children.items():
                want[index[part]].extend(rows)
        for i, rows in enumerate(want):
            assert sorted(data[i].splitlines()) == sorted(copy_bytes(rows, spec.cols[i], fmt).splitlines() if rows else [])
        assert sorted(media.splitlines()) == sorted(copy_bytes(media_rows, MEDIA_COLUMNS, fmt).splitlines()
                                                    if media_rows else [])
        assert r.media_counts() == (len(media_rows), sum(m["size"] or 0 for m in media_rows))
        checked += len(r)
    assert checked > 30
