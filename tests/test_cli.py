"""The command line: exit codes, one-line errors, every command's --help."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.cli import cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["export", "archive", "verify", "serve", "demo", "destinations", "forms"]


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("cmd", [None] + COMMANDS)
def test_help(cmd):
    r = invoke(*([cmd] if cmd else []), "--help")
    assert r.exit_code == 0
    assert "Usage:" in r.output
    if cmd in ("export", "archive", "forms"):
        assert "--token-env" in r.output and "--token-file" in r.output
        assert "--token " not in r.output  # a token is never a command-line value


def test_export_help_names_every_destination_scheme():
    """``export --help`` lists a URL of every destination the registry holds (s3://, azure://
    included), and no driver that only survives as an alias (psycopg2: a notice on each run)."""
    from exporter.registry import SINKS

    text = " ".join(invoke("export", "--help").output.split())
    for key, entry in SINKS.all().items():
        assert any(f"{s}://" in text or f"{s}+" in text for s in entry.schemes), f"--to help lacks {key}"
    assert "psycopg2" not in text


def test_demo_prints_where_it_wrote_and_nothing_when_quiet(tmp_path):
    r = invoke("demo", "--out", str(tmp_path / "loud"), "--format", "json,csv")
    assert r.exit_code == 0, r.output
    assert "SQLite database:" in r.output and "Files (json, csv):" in r.output
    q1, q2 = tmp_path / "q1", tmp_path / "q2"  # -q before the command, and after it
    for out, args in ((q1, ("-q", "demo", "--out", str(q1))), (q2, ("demo", "--out", str(q2), "-q"))):
        r = invoke(*args, "--format", "json,csv")
        assert r.exit_code == 0 and r.output == "", r.output
        assert (out / "demo.db").is_file() and (out / "files" / "forms").is_dir()


def test_verify_ok_and_tampered(sample_archive, tmp_path):
    r = invoke("verify", str(sample_archive))
    assert r.exit_code == 0 and r.output.startswith("OK:")
    copy = tmp_path / "a"
    shutil.copytree(sample_archive, copy)
    (copy / "users.jsonl").write_text("{}\n")
    r = invoke("verify", str(copy))
    assert r.exit_code == 1
    assert "users.jsonl" in r.output and "problem" in r.output


def test_export_archive_to_files(sample_archive, tmp_path):
    out = tmp_path / "out"
    r = invoke("export", "--source", str(sample_archive), "--to", str(out), "--format", "json,csv")
    assert r.exit_code == 0, r.output
    assert "50 submissions" in r.output
    assert (out / "users.csv").is_file()


def test_summary_json_for_a_scheduler(sample_archive, tmp_path):
    import json

    out, summary = tmp_path / "out", tmp_path / "s" / "summary.json"
    r = invoke("-q", "export", "-s", str(sample_archive), "--to", str(out), "--summary-json", str(summary))
    assert r.exit_code == 0 and r.output == "", r.output
    got = json.loads(summary.read_text())
    assert got["status"] == "ok" and got["counts"]["submission"] == 50 and got["counts"]["media"] == 99
    assert got["media_bytes"] > 0 and got["per_sink"] and got["run_id"]
    # a place it cannot be written is refused before anything is created
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path / "o2"), "--summary-json",
               str(out / "users.csv" / "s.json"))  # under a file
    assert r.exit_code == 2 and "--summary-json" in r.output and not (tmp_path / "o2").exists()
    # a run that fails writes none
    summary.unlink()
    r = invoke("export", "-s", str(tmp_path / "missing.zip"), "--to", str(out), "--summary-json", str(summary))
    assert r.exit_code != 0 and not summary.exists()


def test_export_one_form(sample_archive, tmp_path):
    out = tmp_path / "out"
    r = invoke("export", "-s", str(sample_archive), "--form", "1003", "--to", str(out))
    assert r.exit_code == 0, r.output
    assert [p.name for p in (out / "forms").iterdir()] == ["1003-Relevé de compteur"]


def test_unknown_form_is_one_line_and_writes_nothing(sample_archive, tmp_path):
    out = tmp_path / "out"
    r = invoke("export", "-s", str(sample_archive), "--form", "999", "--to", str(out))
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"Error: archive {sample_archive}: unknown form '999': forms: 1001 (Inspection de chantier), "
        "1002 (Bon de livraison), 1003 (Relevé de compteur) (see `exporter forms`)"]
    assert "Traceback" not in r.output
    assert not out.exists() or not any(out.rglob("*.csv"))


def test_usage_errors_exit_2(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", "nosuch://x")
    assert r.exit_code == 2 and "unknown destination scheme 'nosuch://'" in r.output
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path), "--format", "json,yaml")
    assert r.exit_code == 2 and "unknown format 'yaml'" in r.output
    r = invoke("export", "-s", str(sample_archive), "--to", str(tmp_path), "--incremental", "unread")
    assert r.exit_code == 2 and "--action" in r.output


def test_missing_source_is_clear(tmp_path):
    r = invoke("export", "-s", str(tmp_path / "none"), "--to", str(tmp_path / "o"))
    assert r.exit_code == 1 and "no account archive" in r.output


def test_archive_command_writes_a_verifiable_zip(sample_archive, tmp_path):
    out = tmp_path / "acc.zip"
    r = invoke("archive", "-s", str(sample_archive), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert invoke("verify", str(out)).exit_code == 0


def test_destinations_lists_every_sink():
    r = invoke("destinations")
    for key in ("files", "sqlite", "postgres", "mysql", "mssql", "access", "ftp", "sftp", "dropbox", "sharepoint"):
        assert key in r.output


def test_debug_shows_traceback(sample_archive, tmp_path):
    r = CliRunner().invoke(cli, ["--debug", "export", "-s", str(tmp_path / "none"), "--to", str(tmp_path)])
    assert r.exit_code == 1 and "Traceback" in r.output


def test_progress_is_plain_lines_off_a_terminal_and_silent_when_quiet(capsys):
    import io

    from exporter.pipeline import RunSummary
    from exporter.progress import PlainProgress, make_progress

    s = RunSummary(run_id="r", source="x", counts={"form": 1, "submission": 12, "media": 3}, seconds=2.0)
    buf = io.StringIO()
    p = PlainProgress(every=0, stream=buf)
    p.update(s, "form 1 Test")
    assert buf.getvalue() == "form 1 Test: 1 forms, 12 submissions, 3 media (0.0 MB), 6 submissions/s\n"
    p.stage("finishing ./out")  # a long close is announced at once, whatever the interval
    assert buf.getvalue().endswith("\nfinishing ./out...\n")
    q = make_progress(quiet=True)
    q.update(s, "x")
    q.stage("x")
    q.done(s)
    assert capsys.readouterr().err == ""
    assert isinstance(make_progress(quiet=False), PlainProgress)  # pytest's stderr is not a terminal


@pytest.mark.parametrize("columns", [80, 140])
def test_the_progress_bar_keeps_its_counts_whole_on_any_terminal(monkeypatch, columns):
    """On an 80-column terminal rich narrowed every column alike: "123456/300000" became "12…"."""
    import io

    from rich.console import Console

    from exporter.pipeline import RunSummary
    from exporter.progress import RichProgress

    monkeypatch.setenv("COLUMNS", str(columns))
    bar = RichProgress()
    s = RunSummary(run_id="r", source="x", counts={"form": 1, "submission": 123456, "media": 5997}, seconds=2.0,
                   expected=300000)
    bar.progress.update(bar.task, total=s.expected, completed=123456, description="form 1003 Relevé de compteur",
                        extra="5997 media, 16.7 MB, 556/s", short="5997 media, 556/s")
    out = io.StringIO()
    Console(file=out, width=columns).print(bar.progress.get_renderable())
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line and len(line) <= columns, line
    assert "123456/300000" in line and "5997 media" in line and "…" not in line.split("━")[-1], line


def test_password_in_a_destination_url_is_refused(sample_archive, tmp_path):
    r = invoke("export", "-s", str(sample_archive), "--to", "postgresql+psycopg2://etl:s3cret-pw@db/x")
    assert r.exit_code == 2
    assert "--to-password-env" in r.output and "s3cret-pw" not in r.output


def test_nightly_cursor_runs_into_sqlite_and_files(sample_archive, tmp_path):
    import sqlite3

    db = tmp_path / "x.db"
    args = ["export", "-s", str(sample_archive), "--incremental", "cursor", "--to", f"sqlite:///{db}",
            "--to", str(tmp_path / "files")]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "50 submissions" in first.output
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "50 submissions" not in second.output  # only what changed since the stored cursors
    con = sqlite3.connect(db)
    assert con.execute('SELECT COUNT(*) FROM "inspection_de_chantier_1001"').fetchone()[0] == 25
    assert [r[0] for r in con.execute("SELECT status FROM runs")] == ["ok", "ok"]
    assert con.execute("SELECT COUNT(*) FROM export_state").fetchone()[0] == 3



def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """The installed entry point in a process of its own (it installs signal handlers)."""
    return subprocess.run([sys.executable, "-m", "exporter", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("argv, needle", [
    (["export", "--nosuch"], "No such option '--nosuch'"),
    (["export"], "Missing option '--source'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["export", "--source", "sample_data", "--to", "bogus://x"], "unknown destination scheme 'bogus://'"),
])
def test_usage_errors_are_one_line(argv, needle):
    """A usage error is one line naming it and where the help is (no usage block), exit 2."""
    r = run_cli(*argv)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ") and needle in r.stderr, r.stderr
    assert "--help')" in r.stderr


def test_entry_point_exit_codes():
    assert run_cli("--version").returncode == 0
    assert run_cli("forms", "--source", "sample_data").returncode == 0
    r = run_cli("verify", "/nonexistent")
    assert (r.returncode, r.stderr) == (1, "Error: no account archive at /nonexistent\n")
    bare = run_cli()
    assert bare.returncode == 2 and "Commands:" in bare.stderr + bare.stdout


def test_a_reader_that_leaves_is_no_error_message():
    """`exporter ... | head`: the pipe closed under the command gives exit 1 and nothing on stderr."""
    p = subprocess.Popen([sys.executable, "-m", "exporter", "destinations", "--options"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # closed before the interpreter has even started
    assert (p.wait(timeout=60), p.stderr.read()) == (1, b"")
    p.stderr.close()


def test_an_export_says_when_it_finishes_each_destination(tmp_path):
    """Closing a files destination rewrites its aggregates (long on a big account): said at once."""
    r = run_cli("export", "--source", "sample_data", "--to", str(tmp_path / "files"), "--to", f"sqlite:///{tmp_path}/x.db")
    assert r.returncode == 0, r.stderr
    assert f"finishing files {tmp_path / 'files'}..." in r.stderr and "finishing sqlite:///" in r.stderr, r.stderr


def test_the_click_pin_has_what_main_catches():
    """``main`` catches ``click.exceptions.NoArgsIsHelpError``, which click 8.2 added: with an older
    click every usage error would end in an AttributeError traceback instead of its one line."""
    import tomllib

    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    click_req = next(Requirement(d) for d in deps if Requirement(d).name == "click")
    assert not click_req.specifier.contains("8.1.8"), click_req
    assert hasattr(__import__("click").exceptions, "NoArgsIsHelpError")
