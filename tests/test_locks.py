"""One run per account (exporter.locks): a second process is refused at once and told who holds
the lock; a lock whose holder was SIGKILLed is taken over; a holder that may still run never is."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from exporter import owner
from exporter.errors import ConfigError, LockedError
from exporter.locks import AccountLock

HOLD = textwrap.dedent("""
    import sys, time
    from exporter.locks import AccountLock
    lock = AccountLock(sys.argv[1], "acme", command="backup").acquire()
    print("held", flush=True)
    time.sleep(60)
""")

TRY = textwrap.dedent("""
    import sys
    from exporter.errors import LockedError
    from exporter.locks import AccountLock
    try:
        with AccountLock(sys.argv[1], "acme", command="second"):
            print("got it")
    except LockedError as e:
        print(e)
        sys.exit(3)
""")


def holder(state_dir):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(state_dir)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def second(state_dir) -> tuple[int, str, float]:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-c", TRY, str(state_dir)], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t


def test_a_second_process_is_refused_at_once_naming_the_holder(tmp_path):
    p = holder(tmp_path)
    try:
        code, out, took = second(tmp_path)
        assert code == 3, out
        assert f"account acme is already running: locked by pid {p.pid} on host {socket.gethostname()}" in out
        assert "(backup) since 20" in out and str(tmp_path / "acme" / "lock") in out
        assert took < 10  # does not wait for the holder
        info = json.loads((tmp_path / "acme" / "lock").read_text())
        assert info["pid"] == p.pid and info["owner"].startswith(f"{p.pid}.")
        assert AccountLock(tmp_path, "acme").holder().startswith(f"pid {p.pid} on host")
    finally:
        p.kill()
        p.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    p = holder(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    lock_file = tmp_path / "acme" / "lock"
    assert json.loads(lock_file.read_text())["pid"] == p.pid  # left behind by the killed holder
    assert AccountLock(tmp_path, "acme").holder() is None
    code, out, _ = second(tmp_path)
    assert code == 0 and "got it" in out
    assert not lock_file.exists()  # released by the second run
    # in this process too, with the take-over logged
    p = holder(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with AccountLock(tmp_path, "acme") as lock:
        assert json.loads(lock_file.read_text())["pid"] == os.getpid() and lock.held
    assert f"taking over the lock left by pid {p.pid}" in caplog.text


def test_the_lock_is_released_on_exit_and_reentry_is_refused(tmp_path):
    lock = AccountLock(tmp_path, "acme")
    with lock:
        with pytest.raises(LockedError, match=f"locked by pid {os.getpid()}"):
            AccountLock(tmp_path, "acme").acquire()
        with pytest.raises(LockedError, match="already locked by this process"):
            lock.acquire()
    assert not (tmp_path / "acme" / "lock").exists()
    with AccountLock(tmp_path, "acme"):
        pass
    assert (tmp_path / "acme").stat().st_mode & 0o777 == 0o700


def test_a_holder_that_cannot_be_told_gone_is_never_taken_over(tmp_path):
    lock_file = tmp_path / "acme" / "lock"
    lock_file.parent.mkdir()
    # a live process of another host (a state folder shared over NFS): flock does not reach it
    lock_file.write_text(json.dumps({"owner": "4242.1@other-host", "pid": 4242, "host": "other-host",
                                     "since": "2026-01-01T02:00:00Z", "command": "backup"}))
    with pytest.raises(LockedError) as e:
        AccountLock(tmp_path, "acme").acquire()
    assert "pid 4242 on host other-host (backup) since 2026-01-01T02:00:00Z" in str(e.value)
    assert "another host or container" in str(e.value) and f"remove {lock_file}" in str(e.value)
    assert json.loads(lock_file.read_text())["pid"] == 4242  # untouched
    # a live process of this host that does not hold flock (e.g. an older version): refused too
    me = owner.owner()
    lock_file.write_text(json.dumps({"owner": me, "pid": os.getpid(), "host": "h", "since": "x"}))
    with pytest.raises(LockedError, match="this host"):
        AccountLock(tmp_path, "acme").acquire()


def test_a_recycled_pid_is_a_dead_holder(tmp_path):
    lock_file = tmp_path / "acme" / "lock"
    lock_file.parent.mkdir()
    # the parent's pid runs, but the marker's start time is not its own: a recycled pid
    me_where = owner.owner().rpartition("@")[2]
    lock_file.write_text(json.dumps({"owner": f"{os.getppid()}.1@{me_where}", "pid": os.getppid(),
                                     "host": "h", "since": "x"}))
    with AccountLock(tmp_path, "acme"):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("name", ["", "..", "a/b", "-x", "x" * 101, "é"])
def test_bad_account_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="account name"):
        AccountLock(tmp_path, name)
