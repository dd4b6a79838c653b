"""Leftovers of a dead run are removed; a live run's never are (exporter.owner, fsutil.sweep_dead)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from exporter import owner
from exporter.fsutil import MARKER_PREFIX, claim, release, sweep_dead, temp_sibling


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant(root, tok: str, who: str) -> list:
    """A marker owned by ``who`` and two temporary files named with ``tok``, one in a sub-folder."""
    (root / "forms" / "f").mkdir(parents=True, exist_ok=True)
    (root / f"{MARKER_PREFIX}{tok}.0").write_text(who + "\n")
    files = [root / f".users.csv.{tok}-0.partial", root / "forms" / "f" / f".a.json.{tok}-7.partial"]
    for f in files:
        f.write_text("half")
    return files


def test_owner_is_dead_only_for_a_gone_process_of_this_host():
    host = socket.gethostname()
    me = owner.owner()
    assert not owner.is_dead(me)
    assert owner.is_dead(f"{dead_pid()}.1@{host}")
    assert not owner.is_dead(f"{dead_pid()}.1@another-host")  # cannot tell: left alone
    assert not owner.is_dead("")
    assert not owner.is_dead("garbage")
    assert owner.is_dead(f"{os.getppid()}.1@{host}")  # the pid lives, but started at another time: recycled


def test_sweep_removes_a_dead_runs_files_and_keeps_a_live_runs(tmp_path):
    host = socket.gethostname()
    dead = plant(tmp_path, "999999-abcdef", f"{dead_pid()}.1@{host}")
    live = plant(tmp_path, "4242-123456", owner.owner())  # a concurrent run, alive
    elsewhere = plant(tmp_path, "77-000000", f"{dead_pid()}.1@other-host")
    (tmp_path / "keep.partial").write_text("not ours")
    assert sweep_dead(tmp_path) == 2
    assert not any(f.exists() for f in dead)
    assert not (tmp_path / f"{MARKER_PREFIX}999999-abcdef.0").exists()
    assert all(f.exists() for f in live + elsewhere) and (tmp_path / "keep.partial").exists()


def test_claim_marks_the_folder_and_temporary_names_carry_the_token(tmp_path):
    marker = claim(tmp_path)
    assert marker.read_text().strip() == owner.owner()
    fd, tmp = temp_sibling(tmp_path / "x.csv")
    os.close(fd)
    assert f".{owner.token()}-" in tmp and tmp.endswith(".partial")
    release(marker)
    assert not marker.exists()


def test_a_dead_runs_scratch_folder_is_removed_by_the_next_one(tmp_path, monkeypatch):
    import tempfile

    from exporter.fsutil import owned_tempdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host = socket.gethostname()
    dead, live = tmp_path / "exporter-report-dead", tmp_path / "exporter-report-live"
    for d, who in ((dead, f"{dead_pid()}.1@{host}"), (live, owner.owner())):
        d.mkdir()
        (d / f"{MARKER_PREFIX}x").write_text(who)
        (d / "spool.pickle").write_bytes(b"x" * 100)
    mine = owned_tempdir("exporter-report-")
    assert not dead.exists() and live.exists() and mine.is_dir()
    assert (mine / f"{MARKER_PREFIX}{owner.token()}").read_text().strip() == owner.owner()
