"""`exporter backups create|list|verify|restore|prune`: exit codes, one-line errors, a whole cycle
through the command line (real processes for the lock)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
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
    assert r.output.splitlines()[1].startswith(entry["id"] + " ")  # the id --backup takes
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
        (line,) = audit_lines(tmp_path / "state")
        assert line["action"] == "backup" and line["result"] == "locked" and "already running" in line["error"]
    finally:
        holder.kill()
        holder.wait()


def audit_lines(state: Path, account: str = "acme") -> list[dict]:
    path = state / account / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_each_command_run_by_hand_leaves_one_audit_line(base, tmp_path, age_keys):
    """create, verify, restore and prune write one line each to the account's audit log and to
    the state_dir's, ok or failed; a dry run and a refused command write none; the logs verify
    and hold no secret."""
    state = tmp_path / "state"
    secret_env = {"AGE_ID": str(age_keys["identity"]), "PG_PW": "pg-secret-6a1f0c"}
    (tmp_path / "broken.zip").write_bytes(b"")
    steps = [  # each command runs as the list is built
        (create(base, tmp_path, age_keys), 0, "backup", "ok"),
        (invoke("backups", "verify", *base, "--identity-env", "AGE_ID", env=secret_env), 0, "verify", "ok"),
        (invoke("backups", "restore", *base, "--identity-env", "AGE_ID", "--to", str(tmp_path / "replay"),
                env=secret_env), 0, "restore", "ok"),
        (time.sleep(1.1) or create(base, tmp_path, age_keys), 0, "backup", "ok"),  # one backup a second
        (invoke("backups", "prune", *base, "--keep-last", "1", "--dry-run"), 0, None, None),  # no line
        (invoke("backups", "prune", *base, "--keep-last", "1"), 0, "prune", "ok"),
        (invoke("backups", "verify", *base), 2, None, None),  # refused: no identity given, no line
        # failures: an archive that is not one, a wrong identity, a stored backup altered
        (invoke("backups", "create", *base, "--source", str(tmp_path / "broken.zip"), "--to", str(tmp_path / "bk"),
                "--encrypt-to", age_keys["recipients"][0]), 1, "backup", "failed"),
        (invoke("backups", "restore", *base, "--identity-env", "OTHER_ID", "--out", str(tmp_path / "x.zip"),
                "--to", "postgresql://etl@127.0.0.1:9/x", "--to-password-env", "PG_PW",
                env={**secret_env, "OTHER_ID": str(age_keys["other"])}), 1, "restore", "failed"),
    ]
    for r, code, _action, _result in steps:
        assert r.exit_code == code, r.output
    index = json.loads(invoke("backups", "list", *base, "--json").output)
    (stored,) = (tmp_path / "bk").glob("*.zip.age")
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    r = invoke("backups", "verify", *base, "--identity-file", str(age_keys["file"]))
    assert r.exit_code == 1
    steps.append((r, 1, "verify", "failed"))

    lines = audit_lines(state)
    expected = [(action, result) for _r, _code, action, result in steps if action]
    assert [(x["action"], x["result"]) for x in lines] == expected
    assert [x["id"] for x in lines] == [x["id"] for x in audit_lines(tmp_path, "state")]  # the state_dir's log
    first, verify, restore, second, prune, broken, wrong, tampered = lines
    assert first["command"] == "backups create" and first["account"] == "acme" and first["source"] == str(SAMPLE)
    assert first["destinations"] == [str(tmp_path / "bk")] and first["counts"]["submissions"] == 50
    assert first["backup"]["archive_sha256"] and first["backup"]["bytes"] > 0 and first["error"] == ""
    assert verify["backups"][0]["verified"] is True and verify["backups"][0]["sha256"] == first["backup"]["sha256"]
    assert restore["backup"]["name"] == first["backup"]["name"] and restore["destinations"] == [str(tmp_path / "replay")]
    assert [x["name"] for x in prune["removed"]] == [first["backup"]["name"]] and prune["retention"]
    assert [e["name"] for e in index] == [second["backup"]["name"]]
    assert broken["error"] == f"{tmp_path / 'broken.zip'} is not a zip archive"
    assert wrong["error"] and "\n" not in wrong["error"] and wrong["destinations"][0] == "postgresql://etl@127.0.0.1:9/x"
    assert "do not verify" in tampered["error"] and tampered["backups"][0]["verified"] is False
    assert all(x["start"] <= x["end"] == x["time"] and x["host"] for x in lines)

    v = subprocess.run([sys.executable, "-m", "exporter", "audit", "verify", str(state / "audit.jsonl"),
                        str(state / "acme" / "audit.jsonl")], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    written = (state / "audit.jsonl").read_text() + (state / "acme" / "audit.jsonl").read_text()
    for secret in (*secret_env.values(), str(age_keys["other"]), "AGE-SECRET-KEY"):
        assert secret not in written


def test_a_bad_destination_is_refused_before_the_account_is_archived(base, tmp_path, age_keys):
    """The destination is built (its options, secrets, modules) before anything is archived: a
    password variable that is not set is refused first, with nothing created (no lock, spool, index,
    backup) and, as a refusal, no audit line."""
    state = tmp_path / "state"
    started = time.monotonic()
    r = invoke("backups", "create", *base, "--source", str(SAMPLE), "--to", "sftp://u@127.0.0.1:1/x",
               "--to-password-env", "EXPORTER_TEST_UNSET_PW", "--encrypt-to", age_keys["recipients"][0],
               env={"EXPORTER_TEST_UNSET_PW": None})
    assert r.exit_code == 2 and "EXPORTER_TEST_UNSET_PW" in r.output and "is not set" in r.output
    assert "Traceback" not in r.output
    assert time.monotonic() - started < 5
    assert not state.exists()  # no lock, no spool, no index, no audit line
    r = create(base, tmp_path, age_keys, "-o", "retries=x")  # a local folder: a bad option, same refusal
    assert r.exit_code == 2 and not state.exists() and not (tmp_path / "bk").exists()


def test_an_error_after_the_backup_began_leaves_a_failed_audit_line(base, tmp_path, age_keys):
    """Even a ConfigError (the index unreadable, found once the account is locked) is a failure
    once the work began: it is recorded, with its error."""
    state = tmp_path / "state"
    (state / "acme").mkdir(parents=True)
    (state / "acme" / "backups.json").write_text("{not json")
    r = create(base, tmp_path, age_keys)
    assert r.exit_code == 2 and "backups index" in r.output and "unreadable" in r.output
    (line,) = audit_lines(state)
    assert line["action"] == "backup" and line["result"] == "failed" and "unreadable" in line["error"]
    assert not (state / "acme" / "spool").exists() and not list((tmp_path / "bk").glob("*.zip.age"))


def _bad_option(state: Path, index: int = -1) -> str:
    """Give a backup of the index an option its destination does not read (an index edited by
    hand): using that backup is a ConfigError raised once the command's work began."""
    path = state / "acme" / "backups.json"
    doc = json.loads(path.read_text())
    doc["backups"][index]["options"] = {"region": "eu"}
    path.write_text(json.dumps(doc))
    return doc["backups"][index]["name"]


@pytest.mark.parametrize("command", ["verify", "restore", "prune"])
def test_a_config_error_once_verify_restore_or_prune_began_is_a_failure(base, tmp_path, age_keys, command):
    """A refusal before any work (no such backup, no retention rule) writes no audit line; a
    ConfigError raised by the core once its work began (the chosen backup's destination cannot be
    built) is a failure: one line, result failed, with its error."""
    state = tmp_path / "state"
    assert create(base, tmp_path, age_keys).exit_code == 0
    ident = ("--identity-file", str(age_keys["file"]))
    if command == "prune":
        time.sleep(1.1)  # one backup a second
        assert create(base, tmp_path, age_keys).exit_code == 0
        _bad_option(state, 0)  # the older one, which --keep-last 1 removes
        refused, began = ("--keep-last", "0"), ("--keep-last", "1")
    else:
        _bad_option(state)
        refused, began = ("--backup", "nosuch"), ("--backup", "latest")
        if command == "restore":
            refused, began = (*refused, "--out", str(tmp_path / "r1.zip")), (*began, "--out", str(tmp_path / "r2.zip"))
    before = audit_lines(state)
    r = invoke("backups", command, *base, *ident, *refused) if command != "prune" else \
        invoke("backups", command, *base, *refused)
    assert r.exit_code == 2 and audit_lines(state) == before  # refused: nothing done, no line
    r = invoke("backups", command, *base, *ident, *began) if command != "prune" else \
        invoke("backups", command, *base, *began)
    assert r.exit_code == 2 and "option region is not read by the backup destination" in r.output, r.output
    *_, line = audit_lines(state)
    assert len(audit_lines(state)) == len(before) + 1
    assert line["action"] == command and line["result"] == "failed" and "option region" in line["error"]
    assert not list((state / "acme").glob("spool")) and not list((state / "acme").glob("restore-*"))
    assert not (tmp_path / "r2.zip").exists() and len(list((tmp_path / "bk").glob("*.zip.age"))) == len(before)
