"""``exporter export --jobs N``: forms exported by worker processes side by side, into the real
PostgreSQL and MariaDB. Same tables as a sequential run, one run row with every count, the state
of each form, failures as one line with nothing of the failing form committed."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.sql import create_sink

from exporter import parallel
from exporter.cli import cli
from exporter.errors import ExporterError

from .conftest import PG_ADMIN, _my_db, _pg_schema
from .test_sql_constraints import constraints

MY_URL = "mysql+pymysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"


@pytest.fixture(params=["postgresql", "mysql"])
def pg_two(request):
    """Two places to export to, one for a parallel run and one for a sequential run: two schemas
    of the PostgreSQL test database, or two MariaDB databases."""
    if request.param == "mysql":
        with _my_db("mysql", MY_URL) as a, _my_db("mysql", MY_URL) as b:
            yield a, b
        return
    pg_db = request.getfixturevalue("pg_db")
    gen = _pg_schema("postgresql", PG_ADMIN)
    other = next(gen)
    yield pg_db, other
    next(gen, None)


def export(db, source, *extra: str):
    schema = ["-o", f"schema={db.schema}"] if db.schema else []
    args = ["-q", "export", "--source", str(source), "--to", db.url, *schema, *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _content(db) -> dict:
    """Every table's rows but the clock, the run ids and the state's mode (full, then cursor)."""
    out = {}
    for t in sorted(db.tables() - {"runs"}):
        out[t] = [{k: v for k, v in r.items() if k not in ("run_id", "updated_at", "first_run", "last_run", "mode")}
                  for r in db.rows(t)]
    return out


@pytest.mark.parametrize("split", [False, True], ids=["whole-forms", "forms-in-parts"])
def test_parallel_run_writes_what_a_sequential_run_writes(pg_two, sample_archive, monkeypatch, split):
    par, seq = pg_two
    if split:  # the sample's two bigger forms shared among the workers, in slices of 7 submissions
        monkeypatch.setattr(parallel, "SPLIT_MIN_BYTES", 0)
        monkeypatch.setattr(parallel, "SPLIT_ROWS", 7)
        tasks = parallel.plan_tasks(ArchiveSource(sample_archive), 2, "full")
        assert [(t.form_id, t.count) for t in tasks] == [("1001", 2)] * 2 + [("1002", 2)] * 2 + [("1003", 1)]
    r = export(par, sample_archive, "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert export(seq, sample_archive).exit_code == 0
    assert _content(par) == _content(seq)
    keys = constraints(par)  # PostgreSQL: added by the parent once the workers are done
    assert keys == constraints(seq) and len(keys[0]) >= 2 and "ix_media_submission" in keys[1]
    runs_par, runs_seq = par.rows("runs"), seq.rows("runs")
    assert len(runs_par) == 1 and runs_par[0]["status"] == "ok" and runs_par[0]["ended_at"] is not None
    for k in ("forms", "submissions", "media", "counts"):
        assert runs_par[0][k] == runs_seq[0][k], k
    state = create_sink(par.url, par.options).load_state()
    assert state == create_sink(seq.url, seq.options).load_state() and len(state) == 3
    # an incremental rerun in parallel changes nothing
    r = export(par, sample_archive, "--jobs", "3", "--incremental", "cursor")
    assert r.exit_code == 0, r.output
    assert _content(par) == _content(seq)
    assert [x["status"] for x in par.rows("runs", order="run_id")] == ["ok", "ok"]


@pytest.mark.parametrize("split", [False, True], ids=["whole-forms", "forms-in-parts"])
def test_a_failing_form_fails_the_run_in_one_line_and_commits_nothing_of_it(pg_two, sample_archive, monkeypatch,
                                                                            split):
    par, seq = pg_two
    if split:
        monkeypatch.setattr(parallel, "SPLIT_MIN_BYTES", 0)
        monkeypatch.setattr(parallel, "SPLIT_ROWS", 7)
    assert export(seq, sample_archive, "--form", "1002").exit_code == 0
    table = next(r["table_name"] for r in seq.rows("lineage")
                 if r["object"] == "table" and r["form_id"] == "1002" and not r["subform"])
    if par.schema:
        par.execute(f'CREATE TABLE "{par.schema}"."{table}" (submission_id integer, note text)')
    else:
        par.execute(f"CREATE TABLE `{table}` (submission_id integer, note text)")
    r = export(par, sample_archive, "--jobs", "2")
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and table in lines[0] and "Traceback" not in r.output, r.output
    assert par.rows("runs")[0]["status"] == "failed"
    assert "1002" not in create_sink(par.url, par.options).load_state()
    assert par.rows(table) == []


def test_jobs_refuse_destinations_without_parallel_writers(tmp_path, sample_archive):
    r = CliRunner().invoke(cli, ["export", "-s", str(sample_archive), "--jobs", "2",
                                 "--to", f"sqlite:///{tmp_path / 'x.db'}"])
    assert r.exit_code == 2
    assert "parallel writers" in r.output and "--jobs 1" in r.output
    assert not (tmp_path / "x.db").exists()


class _Dead:
    exitcode = -9


def test_a_worker_that_dies_silently_fails_the_run(monkeypatch):
    clock = iter([100.0, 103.0])
    monkeypatch.setattr("exporter.parallel.time.monotonic", lambda: next(clock))
    silent: dict[int, float] = {}
    parallel._Workers._check_alive([_Dead()], set(), silent)  # first sight: its last words may be in the pipe
    with pytest.raises(ExporterError, match="worker 0 stopped unexpectedly .exit code -9"):
        parallel._Workers._check_alive([_Dead()], set(), silent)


def test_plan_tasks_splits_only_big_forms_of_an_archive(sample_archive, monkeypatch):
    src = ArchiveSource(sample_archive)
    assert [(t.form_id, t.count) for t in parallel.plan_tasks(src, 4, "full")] == \
        [(f, 1) for f in sorted(src.form_ids(), key=src.form_weight, reverse=True)]
    monkeypatch.setattr(parallel, "SPLIT_MIN_BYTES", 0)
    weights = {f: src.form_weight(f) for f in src.form_ids()}
    tasks = parallel.plan_tasks(src, 4, "full")
    # a form is split when it is more than half a worker's fair share (total / 4 / 2)
    big = {f for f, w in weights.items() if w * 8 > sum(weights.values())}
    assert {t.form_id for t in tasks if t.count == 4} == big
    assert sorted((t.form_id, t.index) for t in tasks if t.form_id in big) == \
        sorted((f, i) for f in big for i in range(4))

    class Web:  # no form_weight: a live service's forms always go whole
        def form_ids(self):
            return ["1", "2"]
    assert [(t.form_id, t.count) for t in parallel.plan_tasks(Web(), 4, "full")] == [("1", 1), ("2", 1)]


def test_parts_whose_last_batch_ends_with_their_last_record(pg_two, sample_archive, monkeypatch):
    """One submission a batch: every part's last batch is committed before its checkpoint comes
    (the part must still report its cursor to the parent)."""
    par, seq = pg_two
    monkeypatch.setattr(parallel, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "SPLIT_ROWS", 7)
    r = export(par, sample_archive, "--jobs", "2", "--batch-size", "1")
    assert r.exit_code == 0, r.output
    assert export(seq, sample_archive).exit_code == 0
    assert _content(par) == _content(seq)


def test_a_workers_error_reaches_the_parent_masked_by_the_worker(tmp_path):
    """A secret only the worker knows (a --login-env session token it obtained) is masked before
    its error text leaves it."""
    import signal

    from exporter.secrets import register_secret
    from exporter.sinks import RunContext

    secret = "sess-only-the-worker-knows-81f2"

    class Events:
        def __init__(self):
            self.items = []

        def put(self, item):
            self.items.append(item)

        def close(self):
            pass

        def join_thread(self):
            pass

    register_secret(secret)
    events = Events()
    spec = parallel.WorkerSpec(source=str(tmp_path / f"{secret}.zip"), source_options={}, source_run={},
                               destinations=[], ctx=RunContext(run_id="r", source="s", mode="full"), state={},
                               batch_size=None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        with pytest.raises(SystemExit):
            parallel._worker(spec, 0, [], events)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    ((kind, _idx, _name, text),) = events.items
    assert kind == "error" and secret not in text and ".zip" in text


def test_a_refused_parallel_run_closes_its_source():
    """Until the pipeline owns the source, each refusal of run_parallel (destinations without
    parallel writers, a failing plan or deletions preflight) closes it."""
    from exporter.capabilities import Capabilities
    from exporter.sinks import RunContext

    class Source:
        closed = 0

        def close(self):
            self.closed += 1

        def form_ids(self):
            raise ExporterError("the form list cannot be read")

    class Sink:
        name, capabilities = "x", Capabilities(parallel_writers=False)

    src, ctx = Source(), RunContext(run_id="r", source="s")
    with pytest.raises(ExporterError, match="parallel writers"):
        parallel.run_parallel(src, [Sink()], ctx, jobs=2, rebuild=("", {}, {}, []))
    Sink.capabilities = Capabilities(parallel_writers=True)
    with pytest.raises(ExporterError):
        parallel.run_parallel(src, [Sink()], ctx, jobs=2, rebuild=("", {}, {}, []))
    assert src.closed == 2
