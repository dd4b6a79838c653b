"""Accounts spread over Celery workers, for real: the Redis and RabbitMQ of this machine, `exporter
worker` processes started as subprocesses (each in a session of its own, so one is killed outright
with the exports it runs), `exporter serve` processes as the service, SQLite destinations.

30 accounts on 2 workers, one worker SIGKILLed mid-run: every account exported, exactly once, leases
and lock files released; one account enqueued twice at once: one run; the messages on the broker hold
nothing secret; a lease lost mid-run stops the run; beat sends a missed slot once; the lease itself."""
from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Broker, Worker, audit_lines, make_broker, serve, tiny_accounts, wait_for

pytestmark = pytest.mark.network

TOKENS = ("tok-north-7c1e93d0aa51", "tok-south-2b8f40c6de97")
WORKER_OPTIONS = ("--lease", "4", "--visibility-timeout", "8", "--time-limit", "120")


@pytest.fixture(scope="module")
def services():
    procs = [serve(TOKENS[0], latency=0.05), serve(TOKENS[1], latency=0.05)]
    yield [(url, tok) for (_, url), tok in zip(procs, TOKENS, strict=True)]
    for p, _ in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture(params=["redis", "amqp"])
def broker(request):
    b = make_broker(request.param)
    yield b
    b.close()


@pytest.fixture
def redis_broker():
    b = make_broker("redis")
    yield b
    b.close()


def exporter(*args, env, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "exporter", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def submissions(db: Path) -> tuple[int, int, int]:
    """(rows, distinct submissions, runs ok) of an account's SQLite file."""
    with sqlite3.connect(db) as con:
        rows, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT submission_id) FROM releve_de_compteur_1003"
                                     ).fetchone()
        ok = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'ok'").fetchone()[0]
    return rows, distinct, ok


def exported(tmp_path: Path, names) -> list[str]:
    """The accounts exported (an account whose export failed fails the test at once)."""
    out = []
    for n in names:
        lines = audit_lines(tmp_path / "state" / n / "audit.jsonl")
        failed = [x for x in lines if x["result"] == "failed"]
        assert not failed, failed
        if any(x["result"] == "ok" and x["action"] == "export" for x in lines):
            out.append(n)
    return out


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(services, broker, tmp_path):
    tokens = tiny_accounts(tmp_path / "jobs.toml", 30, services)
    names = sorted(n.removesuffix("_TOKEN").lower() for n in tokens)
    env = {**os.environ, **tokens, **broker.env}
    workers = [Worker(tmp_path, f"w{i}", env, options=WORKER_OPTIONS) for i in (1, 2)]
    try:
        for w in workers:
            w.wait_ready()
        r = exporter("jobs", "enqueue", "jobs.toml", "--due", env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "30 task(s) sent" in r.stdout
        # once a few accounts are done, kill the first worker (and the exports it runs) outright
        # while it runs accounts
        victim, survivor = workers
        wait_for(lambda: len(exported(tmp_path, names)) >= 6, 60, "six accounts exported")
        running = wait_for(victim.exports, 60, "an export in the first worker", every=0.05)
        victim.kill()

        def everyone() -> bool:
            return len(exported(tmp_path, names)) == 30

        if broker.url.startswith("redis"):
            try:
                wait_for(everyone, 60, "every account exported", every=0.5)
            except AssertionError:
                # kombu's Redis transport pops a message (BRPOP) before it records it unacked: one on
                # its way to the worker at the instant the worker is killed is lost, not redelivered
                # (docs/celery.md); the next `jobs enqueue --due` (or beat slot) runs its account
                lost = sorted(set(names) - set(exported(tmp_path, names)))
                assert len(lost) <= 2, lost  # at most what the killed worker's 2 processes could take
                assert not any(n in w.text() for w in workers for n in lost), lost  # never received
                r = exporter("jobs", "enqueue", "jobs.toml", "--due", env=env, cwd=tmp_path)
                assert r.returncode == 0 and f"{len(lost)} task(s) sent" in r.stdout, (r.stdout, r.stderr)
        wait_for(everyone, 120, f"every account exported (the second worker's log: {survivor.log})", every=0.5)
        wait_for(lambda: not broker.keys("lease"), 30, "the leases released")
    finally:
        for w in workers:
            w.stop()
    state = tmp_path / "state"
    redelivered = set()
    for name in names:
        # each account: one recorded good run of the export; its data whole, each submission once
        lines = audit_lines(state / name / "audit.jsonl")
        (ok,) = [x for x in lines if x["action"] == "export" and x["result"] not in ("locked", "already done", "not due")]
        assert ok["result"] == "ok", (name, lines)
        rows, distinct, runs_ok = submissions(tmp_path / "out" / f"{name}.db")
        assert rows == distinct == 10, name
        if ok["redelivered"]:  # run again by the other worker after the first was killed
            redelivered.add(name)
            assert ok["worker"].startswith("w2@"), ok
            # 2 when the killed run had committed and was killed in its last instant, before the
            # runner recorded it: run again, the same data (the destination's upsert)
            assert runs_ok in (1, 2), name
        else:
            assert runs_ok == 1, name
        assert not (state / name / "lock").exists()
    # the accounts the killed worker was running were run again, by the other worker
    assert set(running) <= redelivered, (running, redelivered)
    assert {x["account"] for x in audit_lines(state / "audit.jsonl") if x["result"] == "ok"} == set(names)
    v = exporter("audit", "verify", state / "audit.jsonl", *[state / n / "audit.jsonl" for n in names],
                 env=os.environ, cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    # the status (the shared state folder) shows every account's run, and who ran it
    s = exporter("jobs", "status", "jobs.toml", env=os.environ, cwd=tmp_path)
    rows = [line.split() for line in s.stdout.splitlines()[1:]]
    assert len(rows) == 30 and all(r[3] == "ok" for r in rows), s.stdout
    for secret in TOKENS:
        assert secret not in "".join(w.text() for w in workers)


def test_one_account_enqueued_twice_at_once_runs_once(services, broker, tmp_path):
    tokens = tiny_accounts(tmp_path / "jobs.toml", 2, services)
    env = {**os.environ, **tokens, **broker.env}
    workers = [Worker(tmp_path, f"w{i}", env, options=WORKER_OPTIONS) for i in (1, 2)]
    try:
        for w in workers:
            w.wait_ready()
        # two enqueuers at once, both for what is due: the same slot
        both = [subprocess.Popen([sys.executable, "-m", "exporter", "jobs", "enqueue", "jobs.toml", "--due",
                                  "--account", "acc00"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
        assert all(p.wait(60) == 0 for p in both)
        # one enqueuer, the account named twice: two tasks of the same slot, taken by both workers at once
        r = exporter("jobs", "enqueue", "jobs.toml", "--account", "acc01", "--account", "acc01", env=env, cwd=tmp_path)
        assert r.returncode == 0 and "2 task(s) sent" in r.stdout, r.stdout + r.stderr
        state = tmp_path / "state"
        for name in ("acc00", "acc01"):
            wait_for(lambda n=name: len(audit_lines(state / n / "audit.jsonl")) >= 2, 60, f"both tasks of {name}")
    finally:
        for w in workers:
            w.stop()
    for name in ("acc00", "acc01"):
        lines = audit_lines(state / name / "audit.jsonl")
        assert sorted(x["result"] for x in lines)[-1] == "ok" and len(lines) == 2, lines
        dropped = next(x for x in lines if x["result"] != "ok")
        assert dropped["result"] in ("locked", "already done"), dropped
        assert dropped["error"].startswith(("account " + name + " is already running: leased by pid ",
                                            "a run was already made for slot ")), dropped
        assert submissions(tmp_path / "out" / f"{name}.db") == (10, 10, 1)
    assert not broker.keys("lease")


def _raw_messages(broker: Broker) -> list[tuple[str, list]]:
    """The messages waiting in the broker's queue as the broker holds them (consumed): (their whole
    text, headers and properties included; their decoded body)."""
    if broker.url.startswith("redis"):
        out = []
        for raw in broker.redis().lrange(f"{broker.prefix}:{broker.queue}", 0, -1):
            body = base64.b64decode(json.loads(raw)["body"])  # the envelope holds the body in base64
            out.append((raw.decode() + body.decode(), json.loads(body)))
        return out
    from kombu import Connection

    out = []
    with Connection(broker.url) as c:
        ch = c.default_channel
        while (m := ch.basic_get(queue=broker.queue, no_ack=True)) is not None:
            body = m.body.decode() if isinstance(m.body, bytes) else m.body
            out.append((json.dumps({"headers": m.headers, "properties": m.properties}, default=str) + body,
                        json.loads(body)))
    return out


def test_messages_hold_nothing_secret(services, broker, tmp_path):
    tokens = tiny_accounts(tmp_path / "jobs.toml", 3, services)
    env = {**os.environ, **tokens, **broker.env, "ALSO_SECRET": "unrelated-secret-99120"}
    r = exporter("jobs", "enqueue", "jobs.toml", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    messages = _raw_messages(broker)
    assert sorted(body[0][1] for _, body in messages) == ["acc00", "acc01", "acc02"]
    for text, (args, kwargs, _embed) in messages:
        # the jobs file's path, the account's name, the slot; whether only what is due runs
        assert len(args) == 3 and args[0] == str((tmp_path / "jobs.toml").resolve()) and args[2].endswith("Z")
        assert kwargs == {"due": False}
        for secret in (*TOKENS, "unrelated-secret-99120"):
            assert secret not in text


def test_a_lost_lease_stops_the_run(redis_broker, tmp_path):
    broker = redis_broker
    proc, url = serve(TOKENS[0], latency=0.4)
    try:
        tokens = tiny_accounts(tmp_path / "jobs.toml", 1, [(url, TOKENS[0])], schedule=None)
        env = {**os.environ, **tokens, **broker.env}
        w = Worker(tmp_path, "w1", env, options=("--lease", "3", "--time-limit", "120")).wait_ready()
        try:
            assert exporter("jobs", "enqueue", "jobs.toml", env=env, cwd=tmp_path).returncode == 0
            wait_for(w.exports, 60, "the export running", every=0.05)
            (key,) = broker.keys("lease")
            broker.redis().delete(key)  # as if it expired: another worker may take the account now
            log = tmp_path / "state" / "acc00" / "audit.jsonl"
            (line,) = wait_for(lambda: audit_lines(log), 60, "the run's audit line")
        finally:
            w.stop()
    finally:
        proc.terminate()
        proc.wait(10)
    assert line["result"] == "interrupted", line
    assert "lease" in w.text() and "lost" in w.text()
    last = json.loads((tmp_path / "state" / "acc00" / "last-export.json").read_text())
    assert last["result"] == "interrupted" and last["slot"] == line["slot"]  # not served: a copy would run it
    db = tmp_path / "out" / "acc00.db"  # rolled back: nothing committed (the file it made removed, or empty)
    if db.exists():
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert "runs" not in tables or not con.execute("SELECT COUNT(*) FROM runs WHERE status = 'ok'").fetchone()[0]


def test_beat_sends_a_missed_slot_once(services, redis_broker, tmp_path):
    broker = redis_broker
    import shelve

    from exporter.worker import slot_text

    tiny_accounts(tmp_path / "jobs.toml", 2, services, schedule="*/5 * * * *")
    env = {**os.environ, **broker.env}
    # the test takes about 15 s and no */5 slot may come meanwhile (its beat would send it too):
    # started less than a minute before one, it waits for that slot to pass
    to_slot = 300 - time.time() % 300
    if to_slot < 60:
        time.sleep(to_slot + 1)

    def beat(seconds: float) -> str:
        p = subprocess.Popen([sys.executable, "-m", "exporter", "-v", "beat", "jobs.toml", "--schedule-file", "sched"],
                             env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(seconds)
        p.terminate()
        return p.communicate(timeout=30)[0]

    out = beat(4)  # a first start: the entries, due at their next time
    assert not broker.redis().llen(f"{broker.prefix}:{broker.queue}"), out
    import datetime as dt

    from exporter import schedule

    with shelve.open(str(tmp_path / "sched"), writeback=True) as db:  # as if beat had been down for 10 minutes
        assert sorted(db["entries"]) == ["acc00 export", "acc01 export"]
        for entry in db["entries"].values():
            entry.last_run_at = entry.last_run_at - dt.timedelta(minutes=10)
    out = beat(5)
    raw = broker.redis().lrange(f"{broker.prefix}:{broker.queue}", 0, -1)
    assert len(raw) == 2, out
    expected = slot_text(schedule.last_at_or_before("*/5 * * * *", dt.datetime.now(dt.UTC)))
    bodies = sorted(json.loads(base64.b64decode(json.loads(m)["body"])) for m in raw)
    assert [b[0][1:] for b in bodies] == [["acc00", expected], ["acc01", expected]]
    assert all(b[1] == {"due": True} for b in bodies)


def test_lease_expires_when_its_holder_dies_and_is_lost_when_taken(redis_broker):
    broker = redis_broker
    from exporter.lease import Leases

    leases = Leases.from_url(broker.locks, prefix=broker.prefix, lease_seconds=3)
    # a holder in another process, killed outright: its lease is free again within one lease
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom exporter.lease import Leases\n"
        f"lease = Leases.from_url({broker.locks!r}, prefix={broker.prefix!r}, lease_seconds=3).lease('/s/acme')\n"
        "assert lease.acquire()\nprint('held', flush=True)\ntime.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = leases.lease("/s/acme")
        time.sleep(4)  # longer than the lease: renewed meanwhile by the holder's heartbeat
        assert not mine.acquire()
        assert mine.holder().startswith(f"pid {holder.pid} on host ")
        holder.kill()
        holder.wait()
        t = time.monotonic()
        assert mine.acquire(wait=6)
        assert time.monotonic() - t <= 3.5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    lost = []
    mine.on_lost = lost.append
    leases.redis.delete(f"{broker.prefix}:lease:/s/acme")  # taken from it
    wait_for(lambda: lost, 5, "the lease seen lost")
    assert mine.lost and "expired" in lost[0]
    mine.release()


def test_a_leased_worker_takes_over_a_lock_file_of_a_dead_host(tmp_path):
    from exporter.errors import LockedError
    from exporter.locks import AccountLock

    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "lock").write_text(json.dumps({"owner": "4242.1@elsewhere/4026531836", "pid": 4242, "host": "elsewhere",
                                             "since": "2026-01-01T00:00:00Z", "command": "exporter worker"}))
    with pytest.raises(LockedError, match="another host or container"):
        AccountLock(tmp_path, "acme").acquire()
    with AccountLock(tmp_path, "acme", leased=True) as lock:
        assert lock.held
    assert not (folder / "lock").exists()


def test_command_line_problems_are_one_line(tmp_path):
    (tmp_path / "jobs.toml").write_text('[defaults]\nstate_dir = "s"\n[accounts.a]\nsource = "http://x/rest/v3"\n'
                                        'token_env = "A"\ndestinations = [{ to = "out" }]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    cases = [
        (("worker",), "no broker: give --broker URL or set EXPORTER_BROKER"),
        (("worker", "--broker", "redis://:hunter2@127.0.0.1:6379/0"), "set EXPORTER_BROKER instead"),
        (("worker", "--broker", "amqp://guest@127.0.0.1:5672//"), "give --locks redis://"),
        (("worker", "--broker", "kafka://x"), "expected a redis:// or amqp:// URL"),
        (("jobs", "enqueue", "jobs.toml", "--broker", "redis://127.0.0.1:6379/9", "--account", "b"), "no account b"),
        (("beat", "jobs.toml", "--broker", "redis://127.0.0.1:6379/9"), "no account has a schedule"),
    ]
    for args, message in cases:
        r = exporter(*args, env=env, cwd=tmp_path)
        assert r.returncode in (1, 2) and message in r.stderr, (args, r.stderr)
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]  # after the usage line
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr, r.stderr
        assert "hunter2" not in r.stderr


@pytest.mark.parametrize("missing", ["celery", "redis"])
def test_without_the_celery_extra_each_command_says_how_to_get_it(missing, tmp_path):
    (tmp_path / "jobs.toml").write_text('[defaults]\nstate_dir = "s"\n[accounts.a]\nsource = "http://x/rest/v3"\n'
                                        'token_env = "A"\nschedule = "@daily"\ndestinations = [{ to = "out" }]\n')
    # the package made unimportable in that process alone, as where the extra is not installed
    code = f"import sys; sys.modules[{missing!r}] = None; from exporter.cli import main; main()"
    for args in (["worker"], ["beat", "jobs.toml"], ["jobs", "enqueue", "jobs.toml"]):
        r = subprocess.run([sys.executable, "-c", code, *args, "--broker", "redis://127.0.0.1:6379/9"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
        command = " ".join(a for a in args if a != "jobs.toml")
        assert r.returncode == 1 and r.stderr.splitlines() == [
            f"Error: exporter {command} needs Celery, which is not installed here: pip install 'exporter[celery]'"], r.stderr
