"""`exporter backups create|list|verify|restore|prune`: exit codes, one-line errors, a whole cycle
through the command line (real processes for the lock)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.cli import cli

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def base(tmp_path, age_keys):
    return ["--account", "acme", "--state-dir", str(tmp_path / "state")]


def create(base, tmp_path, age_keys, *extra):
    return invoke("backups", "create", *base, "--source", str(SAMPLE), "--to", str(tmp_path / "bk"),
                  "--encrypt-to", age_keys["recipients"][0], *extra)


@pytest.mark.parametrize("cmd", ["create", "list", "verify", "restore", "prune"])
def test_help(cmd):
    r = invoke("backups", cmd, "--help")
    assert r.exit_code == 0 and "--state-dir" in r.output and "--account" in r.output


def test_a_cycle_through_the_command_line(base, tmp_path, age_keys):
    r = create(base, tmp_path, age_keys, "--keep-last", "1")
    assert r.exit_code == 0, r.output
    assert "stored on" in r.output and "files verified" in r.output
    r = invoke("backups", "list", *base)
    assert r.exit_code == 0 and "sha256" in r.output and " yes 20" in r.output
    [entry] = json.loads(invoke("backups", "list", *base, "--json").output)
    assert entry["sha256"] in r.output and str(entry["size"]) in r.output
    r = invoke("backups", "verify", *base, "--identity-file", str(age_keys["file"]))
    assert r.exit_code == 0 and r.output.startswith(f"OK: {entry['name']}")
    r = invoke("backups", "verify", *base)
    assert r.exit_code == 2 and "--identity-file PATH or --identity-env NAME" in r.output
    out = tmp_path / "replay"
    r = invoke("backups", "restore", *base, "--identity-env", "AGE_ID", "--to", str(out), "--format", "json",
               "--out", str(tmp_path / "acme.zip"), env={"AGE_ID": str(age_keys["identity"])})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "acme.zip").exists() and any(out.rglob("*.json"))
    assert str(age_keys["identity"]) not in r.output
    r = invoke("backups", "prune", *base, "--keep-daily", "3", "--dry-run")
    assert r.exit_code == 0 and "0 backup(s) to remove" in r.output
    r = invoke("backups", "prune", *base)
    assert r.exit_code == 2 and "no retention rule" in r.output


def test_refusals_are_one_line(base, tmp_path, age_keys):
    r = invoke("backups", "create", *base, "--source", str(SAMPLE), "--to", str(tmp_path / "bk"))
    assert r.exit_code == 2 and "at least one recipient" in r.output
    r = create(base, tmp_path, age_keys, "-o", "region=eu")
    assert r.exit_code == 2 and "option region is not read by the backup destination" in r.output
    r = invoke("backups", "create", *base, "--source", str(SAMPLE), "--to", str(tmp_path / "bk"),
               "--encrypt-to", str(age_keys["identity"]))
    assert r.exit_code == 2 and "secret key was given" in r.output and str(age_keys["identity"]) not in r.output
    r = invoke("backups", "restore", *base, "--identity-file", str(age_keys["file"]), "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "no verified backup" in r.output
    r = invoke("backups", "list", "--account", "../x", "--state-dir", str(tmp_path))
    assert r.exit_code == 2 and "account name" in r.output
    assert "Traceback" not in r.output


def test_verify_and_restore_take_one_identity(base, tmp_path, age_keys):
    """Both read --identity-file / --identity-env the same way (``identities_of``): one of them,
    never both (which one would win is not for the user to guess), refused before anything is read."""
    both = ("--identity-file", str(age_keys["file"]), "--identity-env", "AGE_ID")
    env = {"AGE_ID": str(age_keys["identity"])}
    for cmd, extra in (("verify", ()), ("restore", ("--out", str(tmp_path / "x.zip")))):
        r = invoke("backups", cmd, *base, *both, *extra, env=env)
        assert r.exit_code == 2 and "give one of --identity-file and --identity-env, not both" in r.output, r.output
        assert r.output.count("Error:") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "x.zip").exists()


HOLD = textwrap.dedent("""
    import sys, time
    from exporter.locks import AccountLock
    AccountLock(sys.argv[1], "acme", command="backup").acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_second_run_of_a_locked_account_exits_at_once(base, tmp_path, age_keys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "state")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([sys.executable, "-m", "exporter", "backups", "create", *base, "--source", str(SAMPLE),
                            "--to", str(tmp_path / "bk"), "--encrypt-to", age_keys["recipients"][0]],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert f"account acme is already running: locked by pid {holder.pid} on host" in r.stderr
        assert "(backup) since" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bk").exists()
    finally:
        holder.kill()
        holder.wait()
