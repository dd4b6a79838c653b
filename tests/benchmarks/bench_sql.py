"""SQL load throughput and peak memory: the exporter against the bulk-load limit and dlt.

    python tests/benchmarks/bench_sql.py [--submissions 200000] [--jobs N] [--skip-dlt] [--skip-mysql]
                                         [--work DIR]

One synthetic account (``synth_account.build(..., tiny_media=True)``, cached in ``--work``) is loaded
into a fresh database per run (created, checked, dropped):

* PostgreSQL (127.0.0.1:5432, user postgres, trust): ``exporter export --to postgresql+psycopg://``
  (one process, and ``--jobs N`` worker processes, N = the CPU count by default)
  versus plain ``COPY ... FROM STDIN`` (psycopg 3 ``cursor.copy``) of CSV files holding the same rows
  (form and sub-form tables and the media index, same columns and types, from the exporter's own
  planner and row code); the same CSV COPYed again batch by batch (as many submissions of a form as
  the exporter's batches hold, with their sub-form and media index rows, per committed transaction,
  into tables that have their primary keys from the start, foreign keys and the media index added
  after the load, as the exporter does: what the server alone costs such a loader, the exporter's
  floor with a client that would cost nothing), and versus dlt loading the same
  submissions as JSON Lines (sub-form rows nested; dlt normalizes them into child tables) plus the
  media index as JSON Lines.
* MariaDB/MySQL (127.0.0.1:3306, root, no password): ``exporter export --to mysql+pymysql://``
  (one process, and with ``--jobs N``) versus ``LOAD DATA LOCAL INFILE`` of the same CSV files.

The CSV and JSONL files are prepared once, outside any timing. Each loader runs in a child process
(through an intermediate process, so the peak RSS is the loader's own); its wall time includes
interpreter start-up and imports, the same for all. Timed work of the baselines: COPY = CREATE
TABLE + COPY + primary keys + foreign keys + indexes; batched COPY = CREATE TABLE + primary keys
+ one COPY per table and batch + COMMIT per batch + foreign keys + indexes; LOAD DATA = CREATE TABLE (with keys and
indexes) + LOAD DATA; dlt = extract + normalize + load with its defaults (append, ``insert_values``
files). Every loader writes the form and sub-form tables and the media index (one row per media
file; the media bytes are not read: no ``--media-in-db``); the exporter also writes its small fixed
tables (users, groups, lists, forms, lineage, runs, export_state), the baselines do not. After each
load the row counts of every table are checked, and a digest of every row compared between the
exporter and the bulk-load baseline.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

# The intermediate process: runs the command and prints the peak RSS (KiB) of the largest process
# of its tree: each descendant's own VmHWM, read every 50 ms (worker processes started from a fork
# server are not the command's children, so rusage alone would miss them), and rusage's figure for
# processes too short-lived to be seen.
_WRAP = r"""
import os, resource, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
peak = 0
def tree(root):
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(k for k, v in parent.items() if v == pid)
    return out
while p.poll() is None:
    for pid in tree(p.pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    time.sleep(0.05)
if p.returncode:
    sys.exit(p.returncode)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(max(peak, ru.ru_maxrss), ru.ru_utime + ru.ru_stime)
"""


def child_run(args: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Run a command in a fresh intermediate process (so the peak RSS is this command's alone);
    return (seconds, peak RSS in MiB, CPU seconds of the command's process and the children it
    waited for: a client's own work, which other jobs on the machine disturb less than its wall
    time; a database server's work is not in it)."""
    # bytecode cached as in any installation (a checkout run with PYTHONDONTWRITEBYTECODE=1 would
    # compile the exporter's modules at each start, which no installed copy does)
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONDONTWRITEBYTECODE"}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAP, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if res.returncode:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"failed: {' '.join(args)}")
    peak, cpu = res.stdout.strip().splitlines()[-1].split()
    return seconds, int(peak) / 1024, float(cpu)


# ================================================================================================
# preparation (untimed): archive, table layout, CSV and JSONL files
# ================================================================================================


def ensure_archive(work: Path, n: int) -> Path:
    arch = work / f"account-{n}"
    if not (arch / "manifest.json").exists():
        sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
        import synth_account

        shutil.rmtree(arch, ignore_errors=True)
        t = time.perf_counter()
        synth_account.build(arch, n, tiny_media=True)
        print(f"built {arch} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return arch


def _csv_value(v) -> str:
    """One CSV field: NULL unquoted for None, every value quoted (so "NULL" stays a string)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        s = "1" if v else "0"
    elif isinstance(v, Decimal):
        s = format(v, "f")
    elif isinstance(v, float):
        s = repr(v)
    elif isinstance(v, dt.datetime):
        s = v.isoformat(sep=" ")
    elif isinstance(v, (dt.date, dt.time)):
        s = v.isoformat()
    else:
        s = str(v)
    return '"' + s.replace('"', '""') + '"'


def _json_value(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    return v


class _Layout:
    """The exporter's own plan of the form tables for one dialect (names, columns, types)."""

    def __init__(self, dialect: str):
        import sqlalchemy as sa
        from exporter.connectors.sql.dialects import profile_for
        from exporter.connectors.sql.planner import NamePlanner
        from exporter.connectors.sql.tables import FIXED_NAMES

        self.dialect = dialect
        self.profile = profile_for(dialect)
        self.planner = NamePlanner(self.profile)
        self.md = sa.MetaData()
        self.taken = {x.lower() for x in FIXED_NAMES}
        self.plans: dict = {}
        self.tables: dict = {}  # part name -> sa.Table (with keys)
        self.order: list[str] = []  # parents first
        # the media index, as the exporter writes it (one row per media file, no bytes)
        from exporter.connectors.sql.tables import fixed_tables

        self.tables["media"] = fixed_tables(self.md, self.profile)["media"]
        self.order.append("media")

    def add(self, form) -> None:
        from exporter.connectors.sql.plans import plan_form
        from exporter.connectors.sql.tables import build_tables

        plan = plan_form(form, [], self.planner, self.profile, self.taken, "bench")
        self.plans[form.id] = plan
        for name, t in build_tables(self.md, plan.main, self.profile, None).items():
            self.tables[name] = t
            self.order.append(name)
        for tp in plan.subforms.values():
            for name, t in build_tables(self.md, tp, self.profile, plan.main).items():
                self.tables[name] = t
                self.order.append(name)

    def shape(self) -> list:
        return [(n, [c.name for c in self.tables[n].columns]) for n in self.order]

    def ddl(self) -> dict:
        """SQL text: create (PostgreSQL: no constraints; MySQL: with keys), then primary keys and
        foreign keys to add after the load (PostgreSQL)."""
        import sqlalchemy as sa
        from sqlalchemy.dialects import mysql, postgresql
        from sqlalchemy.schema import CreateIndex, CreateTable

        d = self.dialect
        dialect = postgresql.dialect() if d == "postgresql" else mysql.dialect()
        q = dialect.identifier_preparer.quote
        out = {"create": [], "keys": [], "tables": {}}
        bare_md = sa.MetaData()
        for name in self.order:
            t = self.tables[name]
            cols = [c.name for c in t.columns]
            out["tables"][name] = cols
            indexes = [str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in t.indexes]
            if d == "mysql":
                out["create"].append(str(CreateTable(t).compile(dialect=dialect)).strip())
                out["create"].extend(indexes)
                continue
            bare = sa.Table(name, bare_md, *[sa.Column(c.name, c.type) for c in t.columns])
            out["create"].append(str(CreateTable(bare).compile(dialect=dialect)).strip())
            pk = ", ".join(q(c.name) for c in t.primary_key.columns)
            out["keys"].append(f"ALTER TABLE {q(name)} ADD PRIMARY KEY ({pk})")
            for fk in t.foreign_key_constraints:
                ref = fk.elements[0].column.table.name
                mine = ", ".join(q(c.name) for c in fk.columns)
                theirs = ", ".join(q(e.column.name) for e in fk.elements)
                out["keys"].append(f"ALTER TABLE {q(name)} ADD FOREIGN KEY ({mine}) REFERENCES {q(ref)} ({theirs})")
            out["keys"].extend(indexes)
        return out


PREPARED_VERSION = 4  # 2: the media index is part of every baseline's data; 3: batch boundaries; 4: 2000 a batch
BATCH = 2000  # submissions per committed batch of the batched COPY baseline


def prepare(arch: Path, data: Path) -> dict:
    """CSV per table (per dialect if the planned layouts differ), JSONL per form, DDL, counts."""
    meta_file = data / "prepared.json"
    if meta_file.exists():
        cached = json.loads(meta_file.read_text())
        if cached.get("version") == PREPARED_VERSION:
            return cached
    from exporter.connectors.archive.source import ArchiveSource
    from exporter.connectors.sql.rows import MEDIA_COLUMNS, media_row, submission_rows

    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    t0 = time.perf_counter()
    layouts = {"postgresql": _Layout("postgresql"), "mysql": _Layout("mysql")}
    files: dict = {}  # (dialect, table) -> file handle
    jsonl: dict = {}
    counts: dict[str, dict[str, int]] = {}
    csv_path: dict[str, dict[str, str]] = {}
    forms: dict[str, dict] = {}
    submissions = media = 0
    own_mysql: dict[str, bool] = {}  # form id -> MySQL plan differs from PostgreSQL's: own CSV files
    media_csv = open(data / "media.csv", "w", encoding="utf-8", newline="")  # same columns in both layouts
    media_jsonl = open(data / "media.jsonl", "w", encoding="utf-8")
    media_cols = layouts["postgresql"].tables["media"].columns.keys()
    assert media_cols == layouts["mysql"].tables["media"].columns.keys()
    # byte ranges of the PostgreSQL files per batch of BATCH submissions of one form (a batch also
    # ends with its form, as the exporter's do): [[table, start, end], ...] per batch
    batches: list[list] = []
    marks: dict[str, int] = {}  # table -> where the open batch starts
    form_subs = 0

    def pg_files() -> dict[str, Any]:
        return {t: fh for (d, t), fh in files.items() if d == "postgresql"} | {"media": media_csv}

    def close_batch(tables: list[str]) -> None:
        ranges = []
        for t, fh in pg_files().items():
            if t in tables:
                end = fh.tell()
                if end > marks.get(t, 0):
                    ranges.append([t, marks.get(t, 0), end])
                marks[t] = end
        if ranges:
            batches.append(ranges)

    current: list[str] = []  # the PostgreSQL tables of the form being read, and media
    for r in ArchiveSource(arch).records({}):
        if r.kind == "form":
            close_batch(current)
            form_subs = 0
            shapes = []
            for lay in layouts.values():
                before = len(lay.order)
                lay.add(r)
                shapes.append([[c.name for c in lay.tables[t].columns] for t in lay.order[before:]] +
                              [lay.order[before:]])
            own_mysql[r.id] = shapes[0] != shapes[1]
            pg = layouts["postgresql"].plans[r.id]
            forms[r.id] = {"table": pg.main.parts[0], "subforms": {sf: tp.parts[0] for sf, tp in pg.subforms.items()}}
            jsonl[r.id] = open(data / f"{pg.main.parts[0]}.jsonl", "w", encoding="utf-8")
            for dialect, lay in layouts.items():
                if dialect == "postgresql" or own_mysql[r.id]:
                    for t in [*lay.plans[r.id].main.parts,
                              *(p for tp in lay.plans[r.id].subforms.values() for p in tp.parts)]:
                        files[(dialect, t)] = open(data / f"{dialect}.{t}.csv", "w", encoding="utf-8", newline="")
                        csv_path.setdefault(dialect, {})[t] = str(data / f"{dialect}.{t}.csv")
                        if dialect == "postgresql" and not own_mysql[r.id]:
                            csv_path.setdefault("mysql", {})[t] = str(data / f"{dialect}.{t}.csv")
            pg_plan = layouts["postgresql"].plans[r.id]
            current = [*pg_plan.main.parts, *(p for tp in pg_plan.subforms.values() for p in tp.parts), "media"]
        elif r.kind == "submission":
            if form_subs and form_subs % BATCH == 0:
                close_batch(current)
            form_subs += 1
            submissions += 1
            for dialect, lay in layouts.items():
                if dialect == "mysql" and not own_mysql[r.form_id]:
                    continue
                plan = lay.plans[r.form_id]
                parent, children = submission_rows(plan, r, lay.profile)
                if dialect == "postgresql":
                    doc = {k: _json_value(v) for k, v in parent[plan.main.parts[0]].items()}
                    for tp in plan.subforms.values():
                        key = tp.parts[0].rsplit("__", 1)[-1]
                        doc[key] = [{k: _json_value(v) for k, v in row.items() if k != tp.key_columns[0]}
                                    for row in children[tp.parts[0]]]
                    jsonl[r.form_id].write(json.dumps(doc, ensure_ascii=False) + "\n")
                for table, rows in [*((t, [row]) for t, row in parent.items()), *children.items()]:
                    fh = files[(dialect, table)]
                    cols = lay.tables[table].columns.keys()
                    for row in rows:
                        fh.write(",".join(_csv_value(row.get(c)) for c in cols) + "\n")
                    counts.setdefault(dialect, {}).setdefault(table, 0)
                    counts[dialect][table] += len(rows)
        elif r.kind == "media":
            media += 1
            row = dict(zip(MEDIA_COLUMNS, media_row(r, r.size, r.sha256, None), strict=True))
            media_csv.write(",".join(_csv_value(row.get(c)) for c in media_cols) + "\n")
            media_jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
    close_batch(current)
    for fh in [*files.values(), *jsonl.values(), media_csv, media_jsonl]:
        fh.close()
    for t, fh in pg_files().items():
        assert marks.get(t, 0) == os.path.getsize(fh.name), f"batch ranges of {t} do not cover its file"
    for dialect in layouts:
        csv_path.setdefault(dialect, {})["media"] = str(data / "media.csv")
        counts.setdefault(dialect, {})["media"] = media
    for dialect, lay in layouts.items():  # tables of forms without submissions
        for t in lay.order:
            counts.setdefault(dialect, {}).setdefault(t, 0)
    counts_mysql = {t: counts["mysql"].get(t, counts["postgresql"].get(t)) for t in layouts["mysql"].order}
    prepared = {"version": PREPARED_VERSION, "submissions": submissions, "media": media, "counts": counts["postgresql"],
                "counts_mysql": counts_mysql, "forms": forms,
                "ddl": {d: lay.ddl() for d, lay in layouts.items()},
                "csv": {d: {t: csv_path[d][t] for t in lay.order} for d, lay in layouts.items()},
                "jsonl": {fid: str(data / f"{f['table']}.jsonl") for fid, f in forms.items()},
                "media_jsonl": str(data / "media.jsonl"), "batches": batches}
    meta_file.write_text(json.dumps(prepared, indent=1))
    print(f"prepared CSV/JSONL in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return prepared


# ================================================================================================
# baseline loaders (run in a child process: ``bench_sql.py --child KIND --db NAME --data DIR``)
# ================================================================================================


def _copy_csv_sql(ddl: dict, table: str) -> str:
    cols = ", ".join(f'"{c}"' for c in ddl["tables"][table])
    return f'COPY "{table}" ({cols}) FROM STDIN WITH (FORMAT csv, NULL \'NULL\')'


def _pg_connect(db: str):
    """A psycopg 3 connection (the project's PostgreSQL driver: the baselines need no other)."""
    import psycopg

    return psycopg.connect(dbname=db, **PG)


def _copy_bytes(cur, sql: str, fh, size: int | None = None) -> None:
    """``COPY ... FROM STDIN`` of ``size`` bytes of ``fh`` (all of it when None), 1 MiB at a time."""
    with cur.copy(sql) as copy:
        left = size
        while left is None or left > 0:
            chunk = fh.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            copy.write(chunk)
            if left is not None:
                left -= len(chunk)


def child_copy_pg(db: str, prepared: dict) -> None:
    ddl, csv = prepared["ddl"]["postgresql"], prepared["csv"]["postgresql"]
    with _pg_connect(db) as conn, conn.cursor() as cur:
        for stmt in ddl["create"]:
            cur.execute(stmt)
        for table, path in csv.items():
            with open(path, "rb") as fh:
                _copy_bytes(cur, _copy_csv_sql(ddl, table), fh)
        for stmt in ddl["keys"]:
            cur.execute(stmt)


def child_copy_pg_batches(db: str, prepared: dict, connections: int = 1) -> None:
    """The same CSV rows COPYed batch by batch, each batch (BATCH submissions of one form: their
    form, sub-form and media index rows) in its own committed transaction, into tables that have
    their primary keys from the start, the foreign keys and the media index added after the load,
    as the exporter does into tables it creates: the server's share of a loader that commits
    consistent batches and can merge into tables already there, with a client that costs nothing.
    With ``connections`` > 1, that many processes share the batches (batch i goes to process i mod
    N), as the exporter's ``--jobs`` workers share forms."""
    import multiprocessing

    ddl = prepared["ddl"]["postgresql"]
    first = [s for s in ddl["keys"] if "PRIMARY KEY" in s]
    with _pg_connect(db) as conn, conn.cursor() as cur:
        for stmt in [*ddl["create"], *first]:
            cur.execute(stmt)
    if connections > 1:
        with multiprocessing.get_context("fork").Pool(connections) as pool:
            pool.starmap(_copy_pg_batches, [(db, prepared, i, connections) for i in range(connections)])
    else:
        _copy_pg_batches(db, prepared, 0, 1)
    with _pg_connect(db) as conn, conn.cursor() as cur:
        for stmt in ddl["keys"]:
            if stmt not in first:
                cur.execute(stmt)


def _copy_pg_batches(db: str, prepared: dict, share: int, shares: int) -> None:
    ddl, csv = prepared["ddl"]["postgresql"], prepared["csv"]["postgresql"]
    conn = _pg_connect(db)
    handles = {t: open(path, "rb") for t, path in csv.items()}
    sql = {t: _copy_csv_sql(ddl, t) for t in csv}
    with conn.cursor() as cur:
        for ranges in prepared["batches"][share::shares]:
            for t, start, end in ranges:
                fh = handles[t]
                fh.seek(start)
                _copy_bytes(cur, sql[t], fh, end - start)
            conn.commit()
    for fh in handles.values():
        fh.close()
    conn.close()


def child_load_mysql(db: str, prepared: dict) -> None:
    import pymysql

    ddl, csv = prepared["ddl"]["mysql"], prepared["csv"]["mysql"]
    conn = pymysql.connect(database=db, local_infile=True, charset="utf8mb4", **MY)
    with conn.cursor() as cur:
        for stmt in ddl["create"]:
            cur.execute(stmt)
        for table, path in csv.items():
            cols = ", ".join(f"`{c}`" for c in ddl["tables"][table])
            cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4 "
                        "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                        f"({cols})", (path,))
            if cur.execute("SHOW WARNINGS"):
                raise SystemExit(f"LOAD DATA into {table}: {cur.fetchall()[:5]}")
    conn.commit()
    conn.close()


def child_dlt_pg(db: str, prepared: dict, pipelines_dir: str) -> None:
    import dlt

    def rows(path: str):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    # dlt insists on a password; the server trusts local connections and ignores it
    dest = dlt.destinations.postgres(
        credentials=f"postgresql://{PG['user']}:trust-auth-ignores-this@{PG['host']}:{PG['port']}/{db}")
    pipe = dlt.pipeline(pipeline_name="bench_sql", destination=dest, dataset_name="bench",
                        pipelines_dir=pipelines_dir, dev_mode=True, progress=None)
    resources = [dlt.resource(rows(path), name=prepared["forms"][fid]["table"]) for fid, path in prepared["jsonl"].items()]
    resources.append(dlt.resource(rows(prepared["media_jsonl"]), name="media"))
    info = pipe.run(resources)
    info.raise_on_failed_jobs()


# ================================================================================================
# databases
# ================================================================================================


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(sql)


def pg_counts(db: str, tables: list[str]) -> dict[str, int]:
    """Rows per table name, wherever the table is (dlt puts it in a dataset schema)."""
    from psycopg import sql

    conn = _pg_connect(db)
    out = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = %s "
                        "AND table_schema NOT LIKE %s", (t, r"%\_staging"))
            found = cur.fetchone()
            if found is None:
                out[t] = -1
                continue
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(found[0]), sql.Identifier(t)))
            out[t] = cur.fetchone()[0]
    conn.close()
    return out


def pg_digests(db: str, tables: list[str]) -> dict[str, str]:
    """An order-independent digest of every row's text, per table (same data -> same digest)."""
    from psycopg import sql

    conn = _pg_connect(db)
    out = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(sql.SQL("SELECT sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint) FROM {} t")
                        .format(sql.Identifier(t)))
            out[t] = str(cur.fetchone()[0])
    conn.close()
    return out


def my_digests(db: str, tables: dict[str, list[str]]) -> dict[str, str]:
    conn = my_conn(db)
    out = {}
    with conn.cursor() as cur:
        for t, cols in tables.items():
            parts = ", ".join(f"COALESCE(`{c}`, '\\N')" for c in cols)
            cur.execute(f"SELECT SUM(CRC32(CONCAT_WS('|', {parts}))) FROM `{t}`")
            out[t] = str(cur.fetchone()[0])
    conn.close()
    return out


def my_conn(db: str | None = None):
    import pymysql

    return pymysql.connect(database=db, charset="utf8mb4", autocommit=True, **MY)


def my_counts(db: str, tables: list[str]) -> dict[str, int]:
    conn = my_conn(db)
    out = {}
    with conn.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT count(*) FROM `{t}`")
            out[t] = cur.fetchone()[0]
    conn.close()
    return out


# ================================================================================================
# driver
# ================================================================================================


class Result:
    def __init__(self, target: str, loader: str, seconds: float, peak: float, counts_ok: bool, cpu: float):
        self.target, self.loader, self.seconds, self.peak, self.ok, self.cpu = (
            target, loader, seconds, peak, counts_ok, cpu)


def check(what: str, got: dict[str, int], want: dict[str, int]) -> bool:
    bad = {t: (got.get(t), n) for t, n in want.items() if got.get(t) != n}
    if bad:
        print(f"ROW COUNT MISMATCH after {what}: " + ", ".join(f"{t}: got {g}, expected {w}" for t, (g, w) in bad.items()),
              file=sys.stderr)
    return not bad


def dlt_expected(prepared: dict) -> dict[str, int]:
    """dlt's table names: the resource name, child tables ``<resource>__<list key>``."""
    out = {}
    for f in prepared["forms"].values():
        out[f["table"]] = prepared["counts"][f["table"]]
        for part in f["subforms"].values():
            out[f["table"] + "__" + part.rsplit("__", 1)[-1]] = prepared["counts"][part]
    out["media"] = prepared["counts"]["media"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--submissions", type=int, default=200_000)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "exporter-bench-sql"))
    ap.add_argument("--skip-dlt", action="store_true")
    ap.add_argument("--skip-mysql", action="store_true")
    ap.add_argument("--skip-pg", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=None, help="exporter --batch-size (default: its own)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="also time the exporter with --jobs N (default: the CPU count; 1: no)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:  # a timed baseline load, in its own process
        prepared = json.loads((Path(a.data) / "prepared.json").read_text())
        if a.child == "copy-pg":
            child_copy_pg(a.db, prepared)
        elif a.child == "copy-pg-batches":
            child_copy_pg_batches(a.db, prepared, a.connections)
        elif a.child == "load-mysql":
            child_load_mysql(a.db, prepared)
        elif a.child == "dlt-pg":
            child_dlt_pg(a.db, prepared, str(Path(a.data) / "dlt-pipelines"))
        else:
            raise SystemExit(f"unknown child {a.child}")
        return

    n = a.submissions
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    arch = ensure_archive(work, n)
    data = work / f"data-{n}"
    prepared = prepare(arch, data)
    want = prepared["counts"]
    rows_total = sum(want.values())
    me = [sys.executable, str(Path(__file__).resolve())]
    tag = f"bench_sql_{os.getpid()}"
    results: list[Result] = []
    digests: dict[tuple[str, str], dict[str, str]] = {}
    exporter = [sys.executable, "-m", "exporter", "-q", "export", "--source", str(arch)]
    if a.batch_size:
        exporter += ["--batch-size", str(a.batch_size)]

    # the exporter's ceiling: read and parse the archive, no sink
    secs, peak, cpu = child_run([sys.executable, "-c",
                                 "import sys; sys.path.insert(0, '.');"
                            "from exporter.connectors.archive.source import ArchiveSource;"
                            f"n = sum(1 for r in ArchiveSource({str(arch)!r}).records({{}}) "
                            "if r.kind == 'submission'); print(n)"])
    results.append(Result("-", "archive replay only (read + parse, no sink)", secs, peak, True, cpu))
    # the floor of any Python loader of this archive: read every JSON line and decode it, nothing more
    secs, peak, cpu = child_run([sys.executable, "-c",
                                 "import glob, orjson;"
                            f"files = glob.glob({str(arch / 'forms' / '*' / '*.jsonl')!r});"
                            "n = sum(1 for p in files for line in open(p, 'rb') if orjson.loads(line) is not None);"
                            "print(n)"])
    results.append(Result("-", "archive JSON lines read + decoded only (orjson, nothing else)", secs, peak, True, cpu))

    if not a.skip_pg:
        runs = [("exporter", exporter)]
        if a.jobs > 1:
            runs.append(("exporter-jobs", [*exporter, "--jobs", str(a.jobs)]))
        runs += [("COPY", None), ("COPY-batches", None), *([("COPY-batches-jobs", None)] if a.jobs > 1 else [])]
        runs += ([] if a.skip_dlt else [("dlt", None)])
        for loader, cmd in runs:
            db = f"{tag}_{loader.lower()}"
            pg_admin(f'DROP DATABASE IF EXISTS "{db}"')
            pg_admin(f'CREATE DATABASE "{db}"')
            env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false", RUNTIME__LOG_LEVEL="WARNING")
            try:
                if loader.startswith("exporter"):
                    args = [*cmd, "--to", f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{db}"]
                    name = {"exporter-jobs": f"exporter --jobs {a.jobs} (COPY loader; peak RSS per process)"}.get(
                        loader, "exporter (COPY loader)")
                elif loader == "COPY":
                    args = [*me, "--child", "copy-pg", "--db", db, "--data", str(data)]
                    name = "COPY FROM STDIN of CSV (+ PK, FK)"
                elif loader.startswith("COPY-batches"):
                    n_conn = a.jobs if loader.endswith("jobs") else 1
                    args = [*me, "--child", "copy-pg-batches", "--db", db, "--data", str(data),
                            "--connections", str(n_conn)]
                    name = (f"parallel batched COPY of the same CSV ({n_conn} connections, " if n_conn > 1
                            else "batched COPY of the same CSV (") + f"{BATCH} submissions a commit, primary keys first)"
                else:
                    shutil.rmtree(data / "dlt-pipelines", ignore_errors=True)
                    args = [*me, "--child", "dlt-pg", "--db", db, "--data", str(data)]
                    import dlt

                    name = f"dlt {dlt.__version__} (JSONL, defaults)"
                secs, peak, cpu = child_run(args, env)
                expect = dlt_expected(prepared) if loader == "dlt" else want
                ok = check(f"PostgreSQL {loader}", pg_counts(db, list(expect)), expect)
                if loader != "dlt":
                    digests[("pg", loader)] = pg_digests(db, list(want))
                results.append(Result("PostgreSQL", name, secs, peak, ok, cpu))
                print(f"PostgreSQL {name}: {secs:.1f}s", file=sys.stderr)
            finally:
                pg_admin(f'DROP DATABASE IF EXISTS "{db}"')

    if not a.skip_mysql:
        want_my = prepared["counts_mysql"]
        admin = my_conn()
        with admin.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.local_infile")
            previous = int(cur.fetchone()[0])
            cur.execute("SET GLOBAL local_infile = 1")
        try:
            for loader in ("exporter", *(["exporter-jobs"] if a.jobs > 1 else []), "LOAD DATA"):
                db = f"{tag}_{loader.replace(' ', '').replace('-', '').lower()}"
                with admin.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
                    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
                try:
                    if loader.startswith("exporter"):
                        args = [*exporter, "--to", f"mysql+pymysql://{MY['user']}@{MY['host']}:{MY['port']}/{db}"]
                        name = "exporter (INSERT loader)"
                        if loader == "exporter-jobs":
                            args += ["--jobs", str(a.jobs)]
                            name = f"exporter --jobs {a.jobs} (INSERT loader; peak RSS per process)"
                    else:
                        args = [*me, "--child", "load-mysql", "--db", db, "--data", str(data)]
                        name = "LOAD DATA LOCAL INFILE of CSV (keys at CREATE)"
                    secs, peak, cpu = child_run(args)
                    ok = check(f"MariaDB {loader}", my_counts(db, list(want_my)), want_my)
                    digests[("my", loader)] = my_digests(db, prepared["ddl"]["mysql"]["tables"])
                    results.append(Result("MariaDB", name, secs, peak, ok, cpu))
                    print(f"MariaDB {name}: {secs:.1f}s", file=sys.stderr)
                finally:
                    with admin.cursor() as cur:
                        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        finally:
            with admin.cursor() as cur:
                cur.execute(f"SET GLOBAL local_infile = {previous}")
            admin.close()

    same = True
    for target, mine, base in (("pg", "exporter", "COPY"), ("pg", "COPY-batches", "COPY"), ("pg", "COPY-batches-jobs", "COPY"),
                               ("pg", "exporter-jobs", "COPY"),
                               ("my", "exporter", "LOAD DATA"), ("my", "exporter-jobs", "LOAD DATA")):
        e, b = digests.get((target, mine)), digests.get((target, base))
        if e is not None and b is not None and e != b:
            same = False
            print(f"CONTENT DIFFERS between the {mine} and {base}: "
                  + ", ".join(t for t in e if e[t] != b.get(t)), file=sys.stderr)
    report(results, prepared, n, rows_total, a)
    if digests:
        print("Table contents (digest of every row's text) identical between the exporter and the "
              f"bulk-load baseline: {'yes' if same else 'NO'}.")
    if not all(r.ok for r in results) or not same:
        raise SystemExit("row counts or contents differ (see above)")


def report(results: list[Result], prepared: dict, n: int, rows_total: int, a) -> None:
    subs = prepared["submissions"]
    mains = sum(prepared["counts"][f["table"]] for f in prepared["forms"].values())
    media = prepared["media"]
    print(f"\n{subs} submissions ({n} asked), {rows_total} rows in {len(prepared['counts'])} tables: "
          f"{mains} form rows, {rows_total - mains - media} sub-form rows, {media} media index rows "
          "(tiny media; one index row each, no bytes: no --media-in-db)\n")
    print("| database | loader | seconds | client CPU s | submissions/s | rows/s | peak RSS MiB | row counts |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r.target} | {r.loader} | {r.seconds:.1f} | {r.cpu:.1f} | {subs / r.seconds:,.0f} "
              f"| {rows_total / r.seconds:,.0f} | {r.peak:.0f} | {'ok' if r.ok else 'MISMATCH'} |")
    by = {(r.target, " ".join(r.loader.split(" ")[:3]) if "--jobs" in r.loader else r.loader.split(" ")[0]): r
          for r in results}

    def ratio(target: str, mine: str, other: str, aim: str) -> None:
        e, o = by.get((target, mine)), by.get((target, other))
        if e and o:
            print(f"- {target}: {mine} / {other} throughput = {o.seconds / e.seconds:.2f}x{aim}")

    print()
    jobs = f"exporter --jobs {a.jobs}"
    ratio("PostgreSQL", "exporter", "COPY", " (aim >= 0.3x, stretch 0.4x)")
    ratio("PostgreSQL", jobs, "COPY", "")
    ratio("PostgreSQL", "exporter", "dlt", " (aim >= 5x)")
    ratio("PostgreSQL", jobs, "dlt", "")
    ratio("PostgreSQL", "batched", "COPY", " (the server's share alone: a client that costs nothing, "
          "committing consistent batches into tables with their primary keys)")
    ratio("PostgreSQL", "parallel", "COPY", f" (the same on {a.jobs} connections)")
    ratio("PostgreSQL", "exporter", "batched", " (against the one-connection floor)")
    ratio("PostgreSQL", jobs, "parallel", f" (against the {a.jobs}-connection floor)")
    ratio("MariaDB", "exporter", "LOAD", " (aim >= 0.3x)")
    ratio("MariaDB", jobs, "LOAD", "")
    print("\nWall times include interpreter start-up and imports; client CPU is the loader process's own "
          "(the database server's is not in it). Baselines read prepared files "
          "(CSV: rows already converted; JSONL: already typed); the exporter reads the account "
          "archive (its JSON lines decoded, typed into records, then rows) and also writes its small fixed "
          "tables. Exporter batch size: " + (str(a.batch_size) if a.batch_size else "its default") + ".")


if __name__ == "__main__":
    main()
