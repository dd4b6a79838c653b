"""Backups (exporter.backups, agecrypt, retention): a real archive of the sample account, verified,
encrypted with age, stored in a folder (SFTP, S3 and Azure: tests/connectors/remote/test_backup_stores.py),
decrypted by Debian's `age` binary, verified and replayed; retention over simulated days; the lock."""
from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify as verify_archive
from pyrage import x25519

from exporter.backups import BackupConfig, create_backup, find, load_index, prune, restore, verify_backups
from exporter.errors import ArchiveError, ConfigError, LockedError, SinkError
from exporter.locks import AccountLock
from exporter.retention import Retention, select
from tests.conftest import require_tool

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DAY0 = dt.datetime(2026, 1, 1, 2, 30, tzinfo=dt.UTC)


def config(tmp_path, age_keys, to=None, options=None, retention=None) -> BackupConfig:
    return BackupConfig("acme", tmp_path / "state", to or str(tmp_path / "backups"), options or {},
                        age_keys["recipients"], retention)


def backup(cfg, now=DAY0):
    return create_backup(cfg, ArchiveSource(SAMPLE), now=now)


# ---- retention (pure) --------------------------------------------------------------------------
def test_retention_follows_restics_forget_rules():
    times = [DAY0 + dt.timedelta(hours=6 * i) for i in range(4 * 100)]  # 4 a day for 100 days
    kept, removed = select(times, lambda t: t, lambda t: True, Retention(keep_daily=7, keep_weekly=4, keep_monthly=3))
    assert len(kept) + len(removed) == len(times)
    last = max(times)
    days = sorted({t.date() for t in kept})
    assert [t for t in kept if t.date() > last.date() - dt.timedelta(days=7)] == \
        [max(x for x in times if x.date() == d) for d in sorted(days, reverse=True)[:7]]  # newest of each day
    assert len({t.isocalendar()[:2] for t in kept}) >= 4 and len({(t.year, t.month) for t in kept}) == 3
    kept, _ = select(times, lambda t: t, lambda t: True, Retention(keep_last=5))
    assert kept == sorted(times, reverse=True)[:5]
    with pytest.raises(ConfigError, match="no retention policy"):
        select(times, lambda t: t, lambda t: True, Retention())
    with pytest.raises(ConfigError, match="keep_daily"):
        Retention(keep_daily=-1)


def test_the_newest_good_backup_is_never_removed_and_bad_ones_hold_no_slot():
    times = [DAY0 + dt.timedelta(days=i) for i in range(10)]
    bad = set(times[-3:])  # the three newest failed verification
    kept, removed = select(times, lambda t: t, lambda t: t not in bad, Retention(keep_last=2))
    assert kept == [times[6], times[5]] and set(bad) <= set(removed)
    kept, removed = select(times, lambda t: t, lambda t: False, Retention(keep_last=1))
    assert removed == []  # nothing good at all: nothing is removed


# ---- a full cycle ------------------------------------------------------------------------------
def test_backup_is_verified_encrypted_and_readable_by_the_age_binary(tmp_path, age_keys):
    age = require_tool("age")
    entry = backup(config(tmp_path, age_keys))
    stored = tmp_path / "backups" / entry["name"]
    assert entry["name"] == "acme-20260101T023000Z.zip.age" and entry["verified"]
    assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert entry["size"] == stored.stat().st_size and entry["archive"]["files"] > 100
    assert entry["checked_by"] == "read back and re-hashed"
    assert not list((tmp_path / "state" / "acme").glob("spool*"))  # scratch removed
    # the standard age tool decrypts it, with either recipient's identity, without our code
    plain = tmp_path / "plain.zip"
    subprocess.run([age, "-d", "-i", str(age_keys["file"]), "-o", str(plain), str(stored)], check=True)
    assert verify_archive(plain) == []
    other = tmp_path / "other.key"
    other.write_text(f"{age_keys['other']}\n")
    subprocess.run([age, "-d", "-i", str(other), "-o", str(tmp_path / "p2.zip"), str(stored)], check=True)
    assert (tmp_path / "p2.zip").read_bytes() == plain.read_bytes()
    with zipfile.ZipFile(plain) as zf:  # a backup of an archive is that archive, every file as it is
        assert {i.filename: zf.read(i) for i in zf.infolist()} == tree(SAMPLE)
    # `exporter verify` passes on it, and it replays exactly as the original account
    r = subprocess.run([sys.executable, "-m", "exporter", "verify", str(plain)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("OK: ")
    for src, out in ((SAMPLE, "orig"), (plain, "replay")):
        r = subprocess.run([sys.executable, "-m", "exporter", "-q", "export", "--source", str(src), "--to",
                            str(tmp_path / out), "--format", "json,csv"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    orig, replay = tree(tmp_path / "orig"), tree(tmp_path / "replay")
    assert [json.loads(t.pop("account.json"))["timezone"] for t in (orig, replay)] == ["Europe/Paris"] * 2
    assert orig == replay  # every file byte for byte (account.json names the source it was read from)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".exporter" not in p.parts}


def test_forty_simulated_days_keep_exactly_the_retention_set(tmp_path, age_keys):
    policy = Retention(keep_daily=7, keep_weekly=3, keep_monthly=2)
    cfg = config(tmp_path, age_keys, retention=policy)
    rng = random.Random(18)
    made = []
    for day in range(40):
        for _ in range(2 if day % 9 == 0 else 1):  # some days twice
            when = DAY0 + dt.timedelta(days=day, minutes=rng.randrange(0, 600))
            made.append(backup(cfg, when)["created"])
        entries = load_index(cfg.state_dir, "acme")
        on_disk = sorted(p.name for p in (tmp_path / "backups").iterdir())
        assert on_disk == sorted(e["name"] for e in entries)  # index and destination agree every day
    stamps = [dt.datetime.strptime(c, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) for c in made]
    want, _ = select(stamps, lambda t: t, lambda t: True, policy)
    assert sorted(e["created"] for e in load_index(cfg.state_dir, "acme")) == sorted(
        t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in want)
    # 7 daily + the newest of 3 weeks and 2 months (several of those are the same backup)
    assert 7 <= len(want) <= 12


def test_a_damaged_archive_is_not_backed_up_and_a_rewritten_one_is(tmp_path, age_keys):
    cfg = config(tmp_path, age_keys)
    damaged = tmp_path / "damaged"
    shutil.copytree(SAMPLE, damaged)
    png = next(damaged.rglob("*.png"))
    png.write_bytes(b"not the photo")
    with pytest.raises(ArchiveError, match="does not verify.*size mismatch"):
        create_backup(cfg, ArchiveSource(damaged), now=DAY0)
    assert load_index(cfg.state_dir, "acme") == [] and not (tmp_path / "backups").exists()
    # a source that is not a whole archive (here: forms named) is written again by the archive sink,
    # as a backup from the web service is: a new manifest, in the current format version
    forms = [p.name for p in (SAMPLE / "forms").iterdir()]
    entry = create_backup(cfg, ArchiveSource(SAMPLE, forms=forms), now=DAY0)
    assert entry["verified"] and entry["archive"]["counts"]["submissions"] > 40
    assert entry["archive"]["counts"]["documents"] == 0  # version 2 counts: the manifest is new


def test_a_failed_backup_stores_nothing_and_prunes_nothing(tmp_path, age_keys):
    cfg = config(tmp_path, age_keys, retention=Retention(keep_last=1))
    first = backup(cfg)
    broken = BackupConfig("acme", cfg.state_dir, "sftp://nobody@127.0.0.1:1/x", {"retries": 0}, cfg.recipients,
                          cfg.retention)
    with pytest.raises(SinkError):
        backup(broken, DAY0 + dt.timedelta(days=1))
    assert [e["name"] for e in load_index(cfg.state_dir, "acme")] == [first["name"]]
    assert (tmp_path / "backups" / first["name"]).exists()
    assert not list((tmp_path / "state" / "acme").glob("spool*"))
    with pytest.raises(SinkError, match="one backup per second"):
        backup(cfg)  # the same second again: refused, nothing changed
    with pytest.raises(ConfigError, match="secret key was given as a backup recipient"):
        backup(BackupConfig("acme", cfg.state_dir, cfg.to, {}, [str(age_keys["identity"])]))
    with pytest.raises(ConfigError, match="not an age recipient"):
        backup(BackupConfig("acme", cfg.state_dir, cfg.to, {}, ["age1nope"]))
    with pytest.raises(ConfigError, match="at least one recipient"):
        backup(BackupConfig("acme", cfg.state_dir, cfg.to, {}, []))


def test_verify_and_restore_need_the_identity_and_catch_tampering(tmp_path, age_keys):
    from exporter.agecrypt import load_identities

    cfg = config(tmp_path, age_keys)
    first = backup(cfg)
    second = backup(cfg, DAY0 + dt.timedelta(days=1))
    ids = load_identities(file=age_keys["file"])
    [(entry, problems)] = verify_backups(cfg.state_dir, "acme", "all", ids)[-1:]
    assert problems == [] and entry["id"] == second["id"]
    out = tmp_path / "restored.zip"
    assert restore(cfg.state_dir, "acme", None, ids, out=out)["id"] == second["id"]  # latest
    assert verify_archive(out) == []
    # a stored file changed by one byte: verify says so and records it; restore refuses it
    stored = tmp_path / "backups" / second["name"]
    data = bytearray(stored.read_bytes())
    data[-100] ^= 1
    stored.write_bytes(bytes(data))
    [(entry, problems)] = verify_backups(cfg.state_dir, "acme", second["id"], ids)
    assert problems and "sha256" in problems[0] and not entry["verified"]
    assert find(load_index(cfg.state_dir, "acme"), "latest")[0]["id"] == first["id"]  # latest good
    with pytest.raises(ArchiveError, match="does not verify"):
        restore(cfg.state_dir, "acme", second["id"], ids, out=tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
    # an identity that is not a recipient cannot read it
    wrong = tmp_path / "wrong.key"
    wrong.write_text(f"{x25519.Identity.generate()}\n")
    [(_, problems)] = verify_backups(cfg.state_dir, "acme", first["id"], load_identities(file=wrong))
    assert "cannot decrypt" in problems[0]
    empty = tmp_path / "empty.key"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no age identity"):
        load_identities(file=empty)


def test_restore_replays_into_a_database(tmp_path, age_keys):
    import sqlite3

    from exporter.agecrypt import load_identities
    from exporter.registry import create_sink

    cfg = config(tmp_path, age_keys)
    backup(cfg)
    db = tmp_path / "replay.db"
    restore(cfg.state_dir, "acme", "latest", load_identities(file=age_keys["file"]), sinks=[create_sink(f"sqlite:///{db}", {})])
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert "users" in tables and len(tables) > 5


def test_a_second_backup_of_a_locked_account_exits_at_once(tmp_path, age_keys):
    cfg = config(tmp_path, age_keys)
    with AccountLock(cfg.state_dir, "acme", command="backup"):
        with pytest.raises(LockedError, match="account acme is already running"):
            backup(cfg)
        with pytest.raises(LockedError):
            prune(cfg.state_dir, "acme", Retention(keep_last=1))
    assert load_index(cfg.state_dir, "acme") == []


def test_the_index_keeps_no_secret(tmp_path, age_keys, monkeypatch):
    monkeypatch.setenv("BK_PASSWORD", "hunter2-secret")
    cfg = BackupConfig("acme", tmp_path / "state", str(tmp_path / "b"), {}, age_keys["recipients"])
    entry = backup(cfg)
    text = (tmp_path / "state" / "acme" / "backups.json").read_text()
    assert "hunter2" not in text and str(age_keys["identity"]) not in text
    assert json.loads(text)["backups"][0]["recipients"] == age_keys["recipients"] and entry["options"] == {}
