"""Audit logs: hash-chained lines appended by several processes at once; an edited, removed or
inserted line (the last one included) is found by `exporter audit verify`; secrets are masked."""
import datetime as dt
import json
import multiprocessing

from click.testing import CliRunner

from exporter import audit
from exporter.cli import cli
from exporter.secrets import register_secret


def _writer(path, who, n):
    for i in range(n):
        audit.append(path, {"account": who, "i": i})


def verify(*paths):
    return CliRunner().invoke(cli, ["audit", "verify", *map(str, paths)], catch_exceptions=False)


def test_concurrent_writers_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"acct{k}", 25)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 100 and sorted((x["account"], x["i"]) for x in lines) == sorted(
        (f"acct{k}", i) for k in range(4) for i in range(25))
    assert audit.verify(path) == []
    r = verify(path)
    assert r.exit_code == 0 and "OK: 1 audit log(s) intact" in r.output


def test_edits_removals_and_insertions_are_found(tmp_path):
    path = tmp_path / "audit.jsonl"
    for i in range(5):
        audit.append(path, {"i": i, "result": "ok"})
    original = path.read_text().splitlines()

    def tampered(lines):
        path.write_text("".join(x + "\n" for x in lines))
        r = verify(path)
        assert r.exit_code == 1 and "problem(s) found" in r.output
        return r.output

    assert "audit.jsonl:3: chain broken" in tampered(original[:1] + [original[1].replace('"ok"', '"failed"')]
                                                     + original[2:])
    assert "audit.jsonl:3: chain broken" in tampered(original[:2] + original[3:])  # a line removed
    assert "audit.jsonl:2: chain broken" in tampered(original[:1] + ['{"i":9,"prev":"x"}'] + original[1:])
    assert "the last line was edited" in tampered(original[:4] + [original[4].replace('"ok"', '"no"')])
    assert "the log ends at line 4 but 5 line(s) were written" in tampered(original[:4])
    path.write_text("".join(x + "\n" for x in original))
    assert verify(path).exit_code == 0


def test_nothing_secret_is_written(tmp_path):
    register_secret("s3cr3t-value-42")
    path = tmp_path / "audit.jsonl"
    audit.append(path, {"error": "refused s3cr3t-value-42", "destinations": ["postgresql://u:pw123@h/db"]})
    text = path.read_text()
    assert "s3cr3t-value-42" not in text and "pw123" not in text and "***" in text


def test_an_append_killed_before_its_head_is_not_an_edit(tmp_path):
    """A writer SIGKILLed between its line and the head (a worker killed mid-run) leaves a whole,
    chained line the head does not count: not reported, and counted by the next append; a last
    line removed or edited is still found."""
    path = tmp_path / "audit.jsonl"
    for i in range(3):
        audit.append(path, {"i": i})
    head = (tmp_path / "audit.jsonl.head").read_text()
    audit.append(path, {"i": 3})
    (tmp_path / "audit.jsonl.head").write_text(head)  # as the killed writer left it
    assert audit.verify(path) == []
    audit.append(path, {"i": 4})
    assert audit.verify(path) == [] and json.loads((tmp_path / "audit.jsonl.head").read_text())["lines"] == 5
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # the last line removed
    assert "the log ends at line 4 but 5 line(s) were written" in audit.verify(path)[0]
    path.write_text("\n".join(lines[:-1] + [lines[-1].replace('"i":4', '"i":5')]) + "\n")  # edited
    assert "the last line was edited" in audit.verify(path)[0]


def test_a_writer_killed_between_the_two_logs_loses_no_line(tmp_path):
    """A run's audit line is staged before the run is recorded: a process killed after the
    account's log and before the state_dir's leaves it staged, and the account's next line puts it
    in the log that missed it, once (the log that has it is not written twice)."""
    from exporter.jobsfile import load

    jobs_file = tmp_path / "jobs.toml"
    (tmp_path / "archive.zip").write_bytes(b"")
    jobs_file.write_text('[defaults]\nstate_dir = "state"\n[accounts.acme]\nsource = "archive.zip"\n'
                         'destinations = [{ to = "out" }]\n')
    account = load(jobs_file).accounts["acme"]
    first = {"id": "run-1", "time": "2026-12-05T02:00:00+00:00", "account": "acme", "result": "ok"}
    audit.stage(account.state_dir, "acme", first)
    staged = dt.datetime.now(dt.UTC)
    audit.append(account.dir / "audit.jsonl", first, once=staged)  # ... killed here
    assert audit.append(account.dir / "audit.jsonl", first, once=staged) is None  # held: not twice
    second = {"id": "run-2", "time": "2026-12-06T02:00:00+00:00", "account": "acme", "result": "ok"}
    audit.write(account.state_dir, "acme", second)
    for log in (account.dir / "audit.jsonl", account.state_dir / "audit.jsonl"):
        assert [json.loads(x)["id"] for x in log.read_text().splitlines()] == ["run-1", "run-2"]
        assert audit.verify(log) == []
    assert not list((account.dir / "audit-pending").iterdir())
    audit.flush(account.state_dir, "acme")  # nothing staged: nothing written
    assert len((account.state_dir / "audit.jsonl").read_text().splitlines()) == 2


def test_once_looks_at_the_lines_appended_since_the_record_was_staged(tmp_path):
    """Lines are read back by their append time (``logged``), not by the time they report: a
    line recovered late with an old time does not stop the search."""
    path = tmp_path / "audit.jsonl"
    t0 = dt.datetime(2026, 12, 5, 2, 0, tzinfo=dt.UTC)

    def line(ident, logged, time="2026-12-01T00:00:00+00:00"):
        return json.dumps({"id": ident, "time": time, "logged": logged.isoformat(), "pad": "p" * 40},
                          separators=(",", ":")) + "\n"

    later = [line(f"n{i}", t0 + dt.timedelta(minutes=10)) for i in range(3000)]  # several read blocks
    path.write_text(line("x", t0) + line("old-time", t0 + dt.timedelta(minutes=5), "2020-01-01T00:00:00+00:00")
                    + "".join(later))
    assert audit.append(path, {"id": "x"}, once=t0) is None  # appended after it was staged: held
    assert audit.append(path, {"id": "x"}, once=t0 - dt.timedelta(days=1)) is None
    # staged well after that line was appended: that line is another run's record of the same id
    assert audit.append(path, {"id": "x"}, once=t0 + dt.timedelta(hours=3)) is not None
    assert json.loads(path.read_text().splitlines()[-1])["logged"] > t0.isoformat()
