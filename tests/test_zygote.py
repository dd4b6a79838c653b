"""`exporter.zygote` for real: `exporter` commands as processes forked from a warm zygote (and, with
the same checks, as new interpreters, where there is no pidfd): the environment, folder, output and
descriptors each gets, signals and time-outs, and what happens when the zygote or its owner dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from exporter import zygote
from tests.cluster import free_port
from tests.conftest import SAMPLE, wait_port

SECRETS = {"SERVED_TOKEN": "tok-served-51c0e2", "OTHER_SECRET": "other-secret-77a9d1", "B_TOKEN": "tok-b-3e81f0"}


@pytest.fixture
def owner(monkeypatch):
    """A zygote whose owner (this process) holds every secret; closed afterwards."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    z = zygote.Zygote()
    yield z
    z.close()


def start(how: str, z: zygote.Zygote, args: list[str], **kw):
    return z.spawn(args, **kw) if how == "zygote" else zygote.popen(args, **kw)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


@pytest.mark.parametrize("how", ["zygote", "popen"])
def test_a_process_gets_its_environment_folder_output_and_lock_and_stops_on_a_signal(how, owner, tmp_path):
    port = free_port()
    log, lock = tmp_path / "run.log", tmp_path / "lock"
    env = {**zygote.basic_env(), "SERVED_TOKEN": SECRETS["SERVED_TOKEN"], "TMPDIR": str(tmp_path)}
    with open(log, "ab", buffering=0) as out, open(lock, "w") as held:
        child = start(how, owner, ["serve", "-s", str(SAMPLE), "--port", str(port), "--token-env", "SERVED_TOKEN"],
                      env=env, cwd=tmp_path, out=out.fileno(), keep=(held.fileno(),))
    try:
        wait_port(port)
        # its own variable: the service answers with the token it was given
        r = requests.get(f"http://127.0.0.1:{port}/rest/v3/forms", headers={"Authorization": SECRETS["SERVED_TOKEN"]},
                         timeout=10)
        assert r.status_code == 200
        proc = Path(f"/proc/{child.pid}")
        assert os.readlink(proc / "cwd") == str(tmp_path)
        assert os.readlink(proc / "fd" / "0") == os.devnull
        assert os.readlink(proc / "fd" / "1") == os.readlink(proc / "fd" / "2") == str(log)
        assert str(lock) in {os.readlink(fd) for fd in (proc / "fd").iterdir()}  # held open, though closed here
        title = Path(f"/proc/{child.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert f"serve -s {SAMPLE} --port {port} --token-env SERVED_TOKEN" in title, title  # its own, in ps
        block = environ_of(child.pid)
        assert "OTHER_SECRET" not in block and SECRETS["OTHER_SECRET"] not in block.values()
        if how == "zygote":  # the block it started with is the zygote's: not even its own secret
            assert not set(block.values()) & set(SECRETS.values()) and set(block) <= set(zygote.basic_env())
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.2)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0  # the fake service's way to stop
    finally:
        child.kill()
        child.wait(10)
    assert "serving " in log.read_text()


@pytest.mark.parametrize("how", ["zygote", "popen"])
def test_a_process_sees_no_variable_of_its_owner_but_those_it_is_given(how, owner, tmp_path):
    (tmp_path / "jobs.toml").write_text(
        '[defaults]\nstate_dir = "state"\n'
        '[accounts.a]\nsource = "http://127.0.0.1:9/rest/v3"\ntoken_env = "SERVED_TOKEN"\ndestinations = [{ to = "out/a" }]\n'
        '[accounts.b]\nsource = "http://127.0.0.1:9/rest/v3"\ntoken_env = "B_TOKEN"\ndestinations = [{ to = "out/b" }]\n')
    log = tmp_path / "check.log"
    with open(log, "ab", buffering=0) as out:
        child = start(how, owner, ["jobs", "check", "jobs.toml"], env={**zygote.basic_env(), "SERVED_TOKEN": "x"},
                      cwd=tmp_path, out=out.fileno())
    assert child.wait(timeout=60) == 2  # B_TOKEN is set in this process, not in the child's environment
    text = log.read_text()
    assert "environment variable B_TOKEN is not set" in text and "SERVED_TOKEN is not set" not in text


def test_a_folder_that_cannot_be_entered_is_one_line_in_the_log(owner, tmp_path):
    log = tmp_path / "run.log"
    with open(log, "ab", buffering=0) as out:
        child = owner.spawn(["--help"], env=zygote.basic_env(), cwd=str(tmp_path / "missing"), out=out.fileno())
    assert child.wait(timeout=30) == 1
    assert log.read_text().strip().splitlines() == [
        f"Error: cannot enter the account's folder {tmp_path / 'missing'}: No such file or directory"]


def test_the_zygote_ignores_stop_signals_and_a_dead_zygote_takes_its_processes_along(owner, tmp_path):
    port = free_port()
    env = {**zygote.basic_env(), "SERVED_TOKEN": "t"}
    with open(tmp_path / "run.log", "ab", buffering=0) as out:
        child = owner.spawn(["serve", "-s", str(SAMPLE), "--port", str(port), "--token-env", "SERVED_TOKEN"], env=env,
                            cwd=str(tmp_path), out=out.fileno())
        wait_port(port)
        server = owner._proc
        assert server is not None
        assert len(os.listdir(f"/proc/{server.pid}/task")) == 1  # single-threaded: safe to fork
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a Ctrl-C or systemctl stop reaching it
            server.send_signal(sig)
        time.sleep(0.5)
        assert server.poll() is None
        server.kill()  # the OOM killer, say: nobody could tell how the child ends, so it ends now
        assert child.wait(timeout=30) == -signal.SIGKILL
        stat = Path(f"/proc/{child.pid}/stat")  # "pid (title) state ...": the title may hold spaces
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"
        # the next request starts a new zygote
        again = owner.spawn(["--version"], env=env, cwd=str(tmp_path), out=out.fileno())
        assert again.wait(timeout=60) == 0 and owner._proc is not server
    assert "exporter " in (tmp_path / "run.log").read_text().splitlines()[-1]


def test_the_zygote_leaves_with_its_owner_and_its_processes_run_on(owner, tmp_path):
    port = free_port()
    with open(tmp_path / "run.log", "ab", buffering=0) as out:
        child = owner.spawn(["serve", "-s", str(SAMPLE), "--port", str(port), "--token-env", "SERVED_TOKEN"],
                            env={**zygote.basic_env(), "SERVED_TOKEN": "t"}, cwd=str(tmp_path), out=out.fileno())
    try:
        wait_port(port)
        server = owner._proc
        owner.close()  # as when the runner ends or is killed outright
        assert server is not None and server.wait(timeout=10) == 0
        assert Path(f"/proc/{child.pid}").exists()  # like a process the runner started: it runs to its end
        requests.get(f"http://127.0.0.1:{port}/rest/v3/forms", timeout=10)
    finally:
        child.kill()


def test_nothing_the_zygote_imports_chooses_the_temporary_folder_of_its_children():
    """A child's temporary files go to its own TMPDIR (its spool): neither the zygote's imports (the
    command line, every plugin's module) nor the zygote itself have made ``tempfile`` choose one."""
    code = ("import tempfile; from exporter import zygote; from exporter.registry import FORMATS, REMOTES, SINKS, "
            "SOURCES; zygote._preload(zygote.PRELOAD); zygote._preload([p.target.partition(':')[0] for r in "
            "(SOURCES, SINKS, REMOTES, FORMATS) for p in r.all().values()]); print(tempfile.tempdir)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "None", out.stdout + out.stderr


def test_the_process_title_masks_a_password_given_in_a_url():
    """A child's title is its command for ``ps`` (world-readable): a URL's password and secret
    query values are masked there as in a log line. (In a process of its own: a title is process-wide.)"""
    code = ("from exporter.zygote import _retitle\n"
            "_retitle(['export', '-s', 'https://x.example/rest?token=abc123', '--to', 'postgresql://u:hunter2@h/db'])\n"
            "print(open('/proc/self/cmdline', 'rb').read().replace(b'\\0', b' ').decode())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "exporter export -s https://x.example/rest?token=*** --to postgresql://u:***@h/db" in r.stdout, r.stdout
    assert "hunter2" not in r.stdout and "abc123" not in r.stdout
