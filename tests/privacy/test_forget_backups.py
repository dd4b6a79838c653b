"""``exporter forget --account``: every encrypted backup of the account rewritten without the
person (the sample account with user 104 in every role), verified, re-encrypted to the same
recipients, swapped in the index, the old file removed; decrypted by the real `age` binary, nothing
of the person is left. A dry run lists each backup's counts and changes nothing; no identity, one
line; a forget SIGKILLed mid-rewrite leaves complete backups only, and the next one completes."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify as verify_archive

from exporter.backups import BackupConfig, create_backup, load_index
from exporter.cli import cli
from tests.conftest import require_tool
from tests.privacy.conftest import EDITED, PERSON, PERSON_VALUES, person_texts, search_files
from tests.privacy.test_forget_kill import ROOT, kill, wait_for

DAY0 = dt.datetime(2026, 1, 1, 2, 30, tzinfo=dt.UTC)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def backed_up(roles_archive, tmp_path, age_keys):
    """Two backups of the account (two days), in a folder."""
    cfg = BackupConfig("acme", tmp_path / "state", str(tmp_path / "backups"), {}, age_keys["recipients"])
    for day in range(2):
        create_backup(cfg, ArchiveSource(roles_archive), now=DAY0 + dt.timedelta(days=day))
    return cfg


def forget_args(cfg, age_keys, *more):
    return ["forget", "--account", cfg.account, "--state-dir", cfg.state_dir, "--identity-file", age_keys["file"],
            "--user", PERSON, *more]


def decrypted(cfg, age_keys, out: Path) -> list[Path]:
    """Every backup the index lists, decrypted by the age binary and unzipped into ``out``."""
    age = require_tool("age")
    out.mkdir()
    folders = []
    for entry in load_index(cfg.state_dir, cfg.account):
        plain = out / entry["name"].removesuffix(".age")
        subprocess.run([age, "-d", "-i", str(age_keys["file"]), "-o", str(plain),
                        str(Path(cfg.to) / entry["name"])], check=True)
        assert verify_archive(plain) == []
        folder = out / entry["id"]
        with zipfile.ZipFile(plain) as z:
            z.extractall(folder)
        plain.unlink()
        folders.append(folder)
    return folders


def stored(cfg) -> list[str]:
    return sorted(p.name for p in Path(cfg.to).iterdir())


def test_a_dry_run_lists_what_each_backup_would_lose_and_changes_nothing(backed_up, age_keys):
    before = (stored(backed_up), load_index(backed_up.state_dir, backed_up.account))
    r = invoke(*forget_args(backed_up, age_keys))
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("backup ")]
    assert len(lines) == 2 and all("would erase 1 user, " in x and " submissions" in x for x in lines), r.output
    assert "acme-20260101T023000Z.zip.age" in lines[0] and "dry run" in r.output
    assert (stored(backed_up), load_index(backed_up.state_dir, backed_up.account)) == before


def test_without_the_identity_it_is_refused_in_one_line(backed_up):
    before = stored(backed_up)
    r = invoke("forget", "--account", "acme", "--state-dir", backed_up.state_dir, "--user", PERSON, "--apply")
    errors = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert r.exit_code == 2 and len(errors) == 1, r.output
    assert "--identity-file PATH or --identity-env NAME" in errors[0]
    assert stored(backed_up) == before


def test_every_backup_is_rewritten_without_the_person(backed_up, age_keys, roles_archive, tmp_path):
    needles = person_texts(roles_archive)
    old = load_index(backed_up.state_dir, backed_up.account)
    plain_before = decrypted(backed_up, age_keys, tmp_path / "before")
    assert all(search_files(f, needles) for f in plain_before)  # the person is there to begin with
    r = invoke(*forget_args(backed_up, age_keys, "--apply", "--reference", "GDPR-1"))
    assert r.exit_code == 0, r.output
    new = load_index(backed_up.state_dir, backed_up.account)
    assert [e["id"] for e in new] == [e["id"] for e in old] and [e["created"] for e in new] == [
        e["created"] for e in old]
    assert all(e["name"] != o["name"] and e["verified"] and e["erased"] for e, o in zip(new, old, strict=True))
    assert stored(backed_up) == sorted(e["name"] for e in new)  # the old files are gone, nothing else left
    assert all(e["recipients"] == o["recipients"] for e, o in zip(new, old, strict=True))
    for e, o in zip(new, old, strict=True):
        lost = o["archive"]["counts"]["submissions"] - e["archive"]["counts"]["submissions"]
        assert lost > 0 and e["archive"]["counts"]["users"] == o["archive"]["counts"]["users"] - 1
    folders = decrypted(backed_up, age_keys, tmp_path / "after")
    for f in folders:
        assert search_files(f, needles) == []
        subs = [json.loads(x) for x in (f / "forms/1001/submissions.jsonl").read_text("utf-8").splitlines()]
        edited = [s for s in subs if s["id"] == EDITED]
        assert edited and edited[0]["update_user_name"] is None  # kept, without the name
    for f, b in zip(folders, plain_before, strict=True):  # the snapshot keeps its time
        assert json.loads((f / "manifest.json").read_text("utf-8"))["exported_at"] == json.loads(
            (b / "manifest.json").read_text("utf-8"))["exported_at"]
    from exporter.agecrypt import load_identities
    from exporter.backups import verify_backups

    checked = verify_backups(backed_up.state_dir, "acme", "all", load_identities(file=age_keys["file"]))
    assert [problems for _e, problems in checked] == [[], []]  # `backups verify` passes on them
    new = load_index(backed_up.state_dir, backed_up.account)  # (verify records its time in the index)
    audit = (backed_up.state_dir / "acme" / "erasures.jsonl").read_text("utf-8").splitlines()
    assert len(audit) == 2 and all(json.loads(x)["request"]["reference"] == "GDPR-1" for x in audit)
    # the person's values, and their id as a key or value: the lines also hold times, backup names
    # and random ids, in which the digits "104" turn up by chance (at 10:4x, say)
    assert not any(v in "\n".join(audit) for v in PERSON_VALUES)
    assert PERSON not in [v for line in audit for v in _values(json.loads(line))]
    # a second forget finds nothing left and changes nothing
    r = invoke(*forget_args(backed_up, age_keys, "--apply"))
    assert r.exit_code == 0 and r.output.count("erased nothing") == 2, r.output
    assert load_index(backed_up.state_dir, backed_up.account) == new


def test_only_personal_keeps_the_rows_without_the_names(backed_up, age_keys, tmp_path):
    old = load_index(backed_up.state_dir, backed_up.account)
    r = invoke(*forget_args(backed_up, age_keys, "--only-personal", "--apply"))
    assert r.exit_code == 0, r.output
    new = load_index(backed_up.state_dir, backed_up.account)
    assert [e["archive"]["counts"] for e in new] == [e["archive"]["counts"] for e in old]
    for f in decrypted(backed_up, age_keys, tmp_path / "after"):
        assert search_files(f, PERSON_VALUES) == []
        users = [json.loads(x) for x in (f / "users.jsonl").read_text("utf-8").splitlines()]
        assert [u["login"] for u in users if u["id"] == PERSON] == [None]


def _forget_process(cfg, age_keys) -> subprocess.Popen:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "exporter", "-q",
                             *map(str, forget_args(cfg, age_keys, "--apply"))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete_backups_only(cfg, age_keys, tmp_path, tag) -> None:
    """Every backup the index lists is on the destination, whole, and decrypts into an archive
    that verifies; two backups, always."""
    assert len(load_index(cfg.state_dir, cfg.account)) == 2
    assert len(decrypted(cfg, age_keys, tmp_path / tag)) == 2


@pytest.mark.parametrize("moment", ["rewriting", "uploading"])
def test_a_forget_killed_mid_rewrite_leaves_whole_backups_and_the_next_one_completes(
        backed_up, age_keys, roles_archive, tmp_path, moment):
    spool = backed_up.state_dir / "acme" / "spool"
    journal = backed_up.state_dir / "acme" / "forget-backups.json"

    def reached() -> bool:
        if moment == "uploading":
            return journal.exists()
        try:  # the spool may be removed between a look and the listing: not reached then
            return any(p.name.startswith(".rewritten.zip.") for p in spool.iterdir())
        except FileNotFoundError:
            return False

    proc = _forget_process(backed_up, age_keys)
    wait_for(reached, proc, f"the forget {moment}", seconds=120, every=0.001)
    kill(proc)
    _complete_backups_only(backed_up, age_keys, tmp_path, "killed")
    r = invoke(*forget_args(backed_up, age_keys, "--apply"))
    assert r.exit_code == 0, r.output
    new = load_index(backed_up.state_dir, backed_up.account)
    assert stored(backed_up) == sorted(e["name"] for e in new) and all(e.get("erased") for e in new)
    assert not journal.exists()
    for f in decrypted(backed_up, age_keys, tmp_path / "after"):
        assert search_files(f, person_texts(roles_archive)) == []
    audit = (backed_up.state_dir / "acme" / "erasures.jsonl").read_text("utf-8").splitlines()
    assert len(audit) == 2  # one per backup rewritten: none lost, none twice


def _max_rss_mb(argv, env) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv``; its peak resident memory (MB), read from the kernel for that child alone."""
    import os

    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.stderr.write(r.stdout + r.stderr); "
            "sys.exit(r.returncode)")
    done = subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, **env}, capture_output=True,
                          text=True)
    return done, int(done.stdout.strip().splitlines()[-1]) / 1024


def test_memory_stays_flat_whatever_the_backup_holds(roles_archive, tmp_path, age_keys):
    """A backup holding a 96 MiB photo (of someone else: copied into the rewritten backup) is
    rewritten in about the memory a backup of kilobytes takes: members are streamed."""
    import os

    from exporter import archive as write_archive

    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    peaks = {}
    for size in (0, 96):
        archive = tmp_path / f"archive-{size}"
        if size:
            raw = tmp_path / f"edited-{size}"
            shutil.copytree(roles_archive, raw)
            with open(raw / "forms/1001/media/700002/photo_700002_0.jpg", "wb") as fh:
                for _ in range(size):
                    fh.write(os.urandom(1 << 20))
            write_archive(raw, archive)  # its manifest holding the photo's size and hash
        else:
            shutil.copytree(roles_archive, archive)
        cfg = BackupConfig("acme", tmp_path / f"state-{size}", str(tmp_path / f"backups-{size}"), {},
                           age_keys["recipients"])
        create_backup(cfg, ArchiveSource(archive), now=DAY0)
        done, peaks[size] = _max_rss_mb([sys.executable, "-m", "exporter", "-q",
                                         *map(str, forget_args(cfg, age_keys, "--apply"))], env)
        assert done.returncode == 0, done.stderr
        (entry,) = load_index(cfg.state_dir, "acme")
        assert entry.get("erased") and (not size or entry["archive"]["size"] > size << 20)
    assert peaks[96] < peaks[0] + 32, peaks  # not the photo's 96 MiB, nor the archive's


def test_after_one_forget_no_destination_nor_backup_holds_the_person(backed_up, age_keys, roles_archive, tmp_path,
                                                                   sftp_server, password_env):
    """One command over a SQLite database, a files folder, an SFTP remote and every backup of the
    account; then every one of them searched (the backups decrypted by the age binary)."""
    import sqlalchemy as sa

    from tests.privacy.conftest import search_sql, search_sqlite_bytes

    db, folder = tmp_path / "k.db", tmp_path / "files"
    sftp = [sftp_server.url("/k"), "-o", f"known_hosts={sftp_server.known_hosts}", "--to-password-env", password_env]
    for to in ([f"sqlite:///{db}"], [folder, "--format", "json,csv,xlsx,pdf"], [*sftp, "--format", "json,csv"]):
        r = invoke("-q", "export", "-s", roles_archive, "--to", *to)
        assert r.exit_code == 0, r.output
    needles = person_texts(roles_archive)
    r = invoke("forget", "--to", f"sqlite:///{db}", "--to", folder, "--to", *sftp,
               *forget_args(backed_up, age_keys, "--apply")[1:])
    assert r.exit_code == 0, r.output
    assert r.output.count(": erased 1 user, 1 group membership, 9 submissions") == 5, r.output
    assert search_sql(sa.create_engine(f"sqlite:///{db}"), None, needles) == []
    assert search_sqlite_bytes(db, needles) == []
    assert search_files(folder, needles) == []
    assert search_files(sftp_server.root / "k", needles) == []
    for f in decrypted(backed_up, age_keys, tmp_path / "plain"):
        assert search_files(f, needles) == []


def test_submissions_gone_from_the_service_are_erased_from_older_backups(roles_archive, tmp_path, age_keys):
    """The newest backup no longer has submission 700002 (deleted in Kizeo since): on request,
    the older backup is rewritten without it; the newest is left as it is."""
    cfg = BackupConfig("acme", tmp_path / "state", str(tmp_path / "backups"), {}, age_keys["recipients"])
    create_backup(cfg, ArchiveSource(roles_archive), now=DAY0)
    from exporter import archive as write_archive

    edited, later = tmp_path / "edited", tmp_path / "later"
    shutil.copytree(roles_archive, edited)
    for name in ("submissions.jsonl", "media.jsonl"):  # deleted in the service
        f = edited / "forms" / "1001" / name
        f.write_text("".join(line + "\n" for line in f.read_text("utf-8").splitlines()
                             if json.loads(line).get("id", json.loads(line).get("submission_id")) != "700002"))
    write_archive(edited, later)  # the account as the next day's backup reads it
    create_backup(cfg, ArchiveSource(later), now=DAY0 + dt.timedelta(days=1))
    old, new = load_index(cfg.state_dir, "acme")
    args = ["forget", "--account", "acme", "--state-dir", cfg.state_dir, "--identity-file", age_keys["file"],
            "--gone-from-service"]
    r = invoke(*args)
    assert r.exit_code == 0 and "1 submission(s) of older backups are gone from the newest one" in r.output, r.output
    assert f"backup {old['name']} (account acme): would erase 1 submission" in r.output
    assert f"backup {new['name']} (account acme): would erase nothing" in r.output
    r = invoke(*args, "--apply")
    assert r.exit_code == 0, r.output
    after = load_index(cfg.state_dir, "acme")
    assert after[1] == new and after[0]["erased"]
    assert after[0]["archive"]["counts"]["submissions"] == new["archive"]["counts"]["submissions"]
    r = invoke(*args)
    assert "0 submission(s) of older backups are gone" in r.output


def test_backups_stored_on_s3_are_rewritten_there(roles_archive, tmp_path, age_keys, s3_server):
    cfg = BackupConfig("acme", tmp_path / "state", s3_server.url("bk"), s3_server.options(), age_keys["recipients"])
    create_backup(cfg, ArchiveSource(roles_archive), now=DAY0)
    r = invoke(*forget_args(cfg, age_keys, "--apply"))
    assert r.exit_code == 0 and "erased 1 user, 1 group membership, 9 submissions" in r.output, r.output
    (entry,) = load_index(cfg.state_dir, "acme")
    assert set(s3_server.objects()) == {f"bk/{entry['name']}"} and entry["checked_by"] == "sha256 on the destination"
    plain = tmp_path / "plain.zip"
    sealed = tmp_path / "sealed.age"
    sealed.write_bytes(s3_server.objects()[f"bk/{entry['name']}"])
    subprocess.run([require_tool("age"), "-d", "-i", str(age_keys["file"]), "-o", str(plain), str(sealed)], check=True)
    with zipfile.ZipFile(plain) as z:
        z.extractall(tmp_path / "x")
    assert search_files(tmp_path / "x", person_texts(roles_archive)) == []


def _values(doc) -> list:
    """Every key and leaf value of a JSON document."""
    if isinstance(doc, dict):
        return [v for k, x in doc.items() for v in [k, *_values(x)]]
    if isinstance(doc, list):
        return [v for x in doc for v in _values(x)]
    return [doc]
