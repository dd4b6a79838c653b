"""`exporter jobs run` for real: `exporter serve` processes with their own tokens, the runner and
its export processes as real subprocesses, SQLite and folder destinations, a local webhook
receiver. One account failing alone, the environment each export sees, locks (a second run, a
runner killed outright), --due, time limits, stop signals, the audit trail and its tampering."""
import http.server
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cluster import account_of
from tests.conftest import wait_port

pytestmark = pytest.mark.network

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
TOKENS = {"ACME_TOKEN": "tok-acme-4f1c2a9b77", "BETA_TOKEN": "tok-beta-8d0e61c5aa", "GAMMA_TOKEN": "tok-wrong-0b9d3e"}
OTHER = {"UNRELATED_SECRET": "unrelated-secret-5551", "ALERT_URL": "http://127.0.0.1:9/unused"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(token: str, *extra: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "-s", str(SAMPLE), "--port", str(port),
                             "--token-env", "SERVED_TOKEN", *extra], env={**os.environ, "SERVED_TOKEN": token},
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/rest/v3"


@pytest.fixture(scope="module")
def services():
    """Two services with their own tokens (acme's, beta's) and a slow one with acme's."""
    procs = [serve(TOKENS["ACME_TOKEN"]), serve(TOKENS["BETA_TOKEN"]), serve(TOKENS["ACME_TOKEN"], "--latency", "0.1")]
    yield {"a": procs[0][1], "b": procs[1][1], "slow": procs[2][1]}
    for p, _ in procs:
        p.terminate()
        p.wait(10)


class Hooks(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hooks.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T0123/secret-path", Hooks.received
    server.shutdown()
    server.server_close()


def account(name, source, token_var, dests, extra=""):
    return (f'[accounts.{name}]\nsource = "{source}"\ntoken_env = "{token_var}"\n{extra}'
            f"destinations = [\n" + "".join(f"  {d},\n" for d in dests) + "]\n")


def write_jobs(tmp_path, *accounts, defaults='state_dir = "state"\n'):
    p = tmp_path / "jobs.toml"
    p.write_text("[defaults]\n" + defaults + "\n" + "\n".join(accounts))
    return p


def env(**more):
    return {**os.environ, **TOKENS, **OTHER, **more}


def jobs(*args, env_=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "exporter", "jobs", *map(str, args)], env=env_ or env(),
                          capture_output=True, text=True, timeout=timeout)


def audit_lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def everything_written(root: Path) -> str:
    return "\n".join(p.read_text("utf-8", "replace") for p in root.rglob("*") if p.is_file()
                     and p.suffix in (".jsonl", ".log", ".json", ".head"))


def test_three_accounts_one_fails_alone(services, webhook, tmp_path):
    hook_url, received = webhook
    p = write_jobs(
        tmp_path,
        account("acme", services["a"], "ACME_TOKEN", ['{ to = "sqlite:///acme.db" }',
                                                     '{ to = "out/acme", formats = ["json", "csv"] }',
                                                     '{ to = "out/acme-x", formats = ["xlsx"] }'],
                'schedule = "0 0 1 1 *"\n'),
        account("beta", services["b"], "BETA_TOKEN", ['{ to = "out/beta", formats = ["csv"] }'],
                'schedule = "0 0 1 1 *"\n'),
        account("gamma", services["a"], "GAMMA_TOKEN", ['{ to = "sqlite:///gamma.db" }'], 'schedule = "0 0 1 1 *"\n'),
        defaults='state_dir = "state"\nincremental = "cursor"\nalerts = { webhook_env = "HOOK", on = ["failure"] }\n')
    r = jobs("run", p, env_=env(HOOK=hook_url))
    assert r.returncode == 1, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert rows["acme"][1:6] == ["export", "ok", rows["acme"][3], "50", "99"]
    assert rows["beta"][2] == "ok" and rows["beta"][4] == "50"
    assert rows["gamma"][2] == "failed" and "HTTP 401" in r.stdout
    # the two good accounts wrote everything; the failing one created nothing
    with sqlite3.connect(tmp_path / "acme.db") as con:
        assert con.execute("SELECT COUNT(*) FROM runs WHERE status = 'ok'").fetchone()[0] == 1
    assert list((tmp_path / "out" / "acme").rglob("*.json")) and list((tmp_path / "out" / "beta").rglob("*.csv"))
    assert not list((tmp_path / "out" / "beta").rglob("*.json"))
    # each folder of one account in its own formats, in the same pass
    assert not list((tmp_path / "out" / "acme").rglob("*.xlsx"))
    assert list((tmp_path / "out" / "acme-x").rglob("*.xlsx")) and not list((tmp_path / "out" / "acme-x").rglob("*.csv"))
    assert not (tmp_path / "gamma.db").exists()
    # isolation on disk: private folders, a log per run naming the command and the variables it got
    state = tmp_path / "state"
    for name in ("acme", "beta", "gamma"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o700
        assert stat.S_IMODE((state / name / "spool").stat().st_mode) == 0o700
        (log,) = (state / name / "logs").glob("*.log")
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        head = log.read_text().splitlines()
        assert head[1].startswith("# command: exporter export --source ")
        variables = head[3].removeprefix("# environment: ").split(", ")
        assert f"{name.upper()}_TOKEN" in variables and "TMPDIR" in variables
        assert not set(variables) & ({"ACME_TOKEN", "BETA_TOKEN", "GAMMA_TOKEN", "HOOK"} - {f"{name.upper()}_TOKEN"})
    # the audit trail: one line per account, a shared log of all three, chained and intact
    for name, result in (("acme", "ok"), ("beta", "ok"), ("gamma", "failed")):
        (line,) = audit_lines(state / name / "audit.jsonl")
        assert line["account"] == name and line["result"] == result and line["action"] == "export"
    shared = audit_lines(state / "audit.jsonl")
    assert sorted(x["account"] for x in shared) == ["acme", "beta", "gamma"]
    acme = next(x for x in shared if x["account"] == "acme")
    assert acme["counts"]["media"] == 99 and acme["counts"]["bytes"] > 0  # from the export's --summary-json
    assert acme["counts"]["submissions"] == 50 and acme["destinations"] == ["sqlite:///acme.db", "out/acme", "out/acme-x"]
    logs = [state / "audit.jsonl"] + [state / n / "audit.jsonl" for n in ("acme", "beta", "gamma")]
    v = subprocess.run([sys.executable, "-m", "exporter", "audit", "verify", *map(str, logs)],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "OK: 4 audit log(s) intact" in v.stdout
    # one alert, for the failure, with no secret in it
    assert [b["account"] for _, b in received] == ["gamma"]
    path, body = received[0]
    assert path == "/hooks/T0123/secret-path" and body["result"] == "failed" and "gamma" in body["text"]
    # no secret anywhere: output, audit, state, logs
    written = everything_written(state) + r.stdout + r.stderr + json.dumps([b for _, b in received])
    for secret in (*TOKENS.values(), *OTHER.values(), "secret-path"):
        assert secret not in written, secret
    # status, then --due: nothing is due (the schedules say 1 January); acme made due runs alone
    s = jobs("status", p)
    assert s.returncode == 0
    status = {line.split()[0]: line.split() for line in s.stdout.splitlines()[1:]}
    assert status["acme"][3] == "ok" and status["gamma"][3] == "failed" and status["acme"][5].endswith(":00")
    r = jobs("run", p, "--due", env_=env(HOOK=hook_url))
    assert r.returncode == 0 and r.stdout.count("not due") == 3
    st = json.loads((state / "acme" / "last-export.json").read_text())
    st["start"] = "2000-01-01T00:00:00+00:00"
    (state / "acme" / "last-export.json").write_text(json.dumps(st))
    r = jobs("run", p, "--due", env_=env(HOOK=hook_url))
    assert r.returncode == 0, r.stdout
    assert "acme     export  ok" in r.stdout and r.stdout.count("not due") == 2
    assert len(audit_lines(state / "acme" / "audit.jsonl")) == 2 and len(audit_lines(state / "audit.jsonl")) == 4
    # a tampered line (a failure turned into a success) is found
    lines = (state / "audit.jsonl").read_text().splitlines()
    i = next(n for n, x in enumerate(lines) if '"gamma"' in x)
    lines[i] = lines[i].replace('"result":"failed"', '"result":"ok"')
    (state / "audit.jsonl").write_text("\n".join(lines) + "\n")
    v = subprocess.run([sys.executable, "-m", "exporter", "audit", "verify", str(state / "audit.jsonl")],
                       capture_output=True, text=True)
    assert v.returncode == 1 and f"audit.jsonl:{i + 2}: chain broken" in v.stderr


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        found = children(todo.pop())
        out += found
        todo += found
    return out


def export_children(pid: int, n: int, timeout: float = 30) -> dict[int, tuple[str, dict]]:
    """The account processes started by runner ``pid`` (at least ``n``; forked by its zygote):
    each one's account, and the environment block it started with (/proc/PID/environ)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for c in descendants(pid):
            name = account_of(c)
            try:
                environ = (Path("/proc") / str(c) / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if name:
                found[c] = (name, dict(x.decode().split("=", 1) for x in environ if b"=" in x))
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {n} export processes under {pid}")


def test_each_export_sees_only_its_own_secret_and_a_stop_signal_stops_all(services, tmp_path):
    p = write_jobs(tmp_path,
                   account("acme", services["slow"], "ACME_TOKEN", ['{ to = "sqlite:///acme.db" }']),
                   account("beta", services["slow"], "BETA_TOKEN", ['{ to = "out/beta" }']),
                   account("gamma", services["slow"], "GAMMA_TOKEN", ['{ to = "out/gamma" }']),
                   defaults='state_dir = "state"\nalerts = { webhook_env = "ALERT_URL" }\n')
    runner = subprocess.Popen([sys.executable, "-m", "exporter", "jobs", "run", str(p), "--parallel", "2"],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = export_children(runner.pid, 2)
        # the block each process started with is its zygote's: the basics, no secret at all (an
        # export's own variables are set after the fork: tests/test_zygote.py; the logs' headers)
        for _name, environ in found.values():
            assert not set(environ) & (set(TOKENS) | set(OTHER) | {"TMPDIR"})
            assert not set(environ.values()) & (set(TOKENS.values()) | set(OTHER.values()))
            assert set(environ) <= {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "PYTHONPATH",
                                    "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"} | \
                {k for k in environ if k.startswith("LC_")}
        for name in {name for name, _env in found.values()}:
            (log,) = (tmp_path / "state" / name / "logs").glob("*.log")
            variables = log.read_text().splitlines()[3].removeprefix("# environment: ").split(", ")
            assert f"{name.upper()}_TOKEN" in variables and not set(variables) & (set(TOKENS) - {f"{name.upper()}_TOKEN"})
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err, err
    results = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:]}
    assert sorted(results.values()) == ["interrupted", "interrupted", "not"], out + err  # the third never started
    state = tmp_path / "state"
    interrupted = [x for x in audit_lines(state / "audit.jsonl") if x["result"] == "interrupted"]
    assert len(interrupted) == 2
    assert not (tmp_path / "acme.db").exists() or sqlite3.connect(tmp_path / "acme.db").execute(
        "SELECT status FROM runs").fetchall() == [("interrupted",)]


def test_a_running_account_is_locked_even_after_its_runner_is_killed(services, tmp_path):
    p = write_jobs(tmp_path, account("acme", services["slow"], "ACME_TOKEN", ['{ to = "out/acme" }'],
                                     'schedule = "* * * * *"\n'))
    runner = subprocess.Popen([sys.executable, "-m", "exporter", "jobs", "run", str(p)], env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (child,) = export_children(runner.pid, 1)
        t = time.monotonic()
        r = jobs("run", p, "--account", "acme")
        assert time.monotonic() - t < 10
        assert r.returncode == 1 and "acme     export  locked" in r.stdout
        assert f"account acme is already running: locked by pid {runner.pid} on host {socket.gethostname()} " \
               "(jobs run) since " in r.stdout
        r = jobs("run", p, "--due")
        assert r.returncode == 0 and "acme     export  running" in r.stdout
        s = jobs("status", p)
        assert f"acme     (running)  pid {runner.pid} on host {socket.gethostname()} (jobs run) since " in s.stdout
        # the runner killed outright: its export still holds the account until it ends
        runner.kill()
        runner.wait()
        assert Path(f"/proc/{child}").exists()
        r = jobs("run", p)
        assert r.returncode == 1 and "locked" in r.stdout
        deadline = time.monotonic() + 60
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runner.kill()
    r = jobs("run", p, "--account", "acme")  # the lock left by the dead pair is taken over
    assert r.returncode == 0, r.stdout + r.stderr
    assert "acme     export  ok" in r.stdout


def test_time_limit_and_a_webhook_that_does_not_answer(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    p = write_jobs(
        tmp_path,
        f'[accounts.fast]\nsource = "{SAMPLE}"\ndestinations = [{{ to = "out/fast" }}]\n',
        account("slow", "http://127.0.0.1:9/rest/v3", "ACME_TOKEN", ['{ to = "out/slow" }'], "time_limit = 0.01\n"),
        defaults='state_dir = "state"\nalerts = { webhook_env = "HOOK", on = ["success", "failure"] }\n')
    r = jobs("run", p, env_=env(HOOK=dead))
    assert r.returncode == 1
    assert "fast     export  ok" in r.stdout and "slow     export  timed out" in r.stdout
    assert "stopped after its time_limit of 0.01s" in r.stdout
    assert r.stderr.count("the alert webhook http://127.0.0.1:") == 2 and "/hook" not in r.stderr
    (line,) = audit_lines(tmp_path / "state" / "slow" / "audit.jsonl")
    assert line["result"] == "timed out"


def test_success_alert_when_asked_and_status_of_a_new_account(webhook, tmp_path):
    hook_url, received = webhook
    p = write_jobs(tmp_path,
                   f'[accounts.local]\nsource = "{SAMPLE}"\nschedule = "@daily"\n'
                   f'destinations = [{{ to = "sqlite:///local.db" }}]\n'
                   'alerts = { webhook_env = "HOOK", on = ["success"] }\n')
    s = jobs("status", p)
    assert s.returncode == 0 and s.stdout.splitlines()[1].split() == ["local", "export", "never", "-", "-", "now"]
    r = jobs("run", p, "--due", env_=env(HOOK=hook_url))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(b["account"], b["result"]) for _, b in received] == [("local", "ok")]
    assert received[0][1]["text"] == "exporter: export of account local ok"
    r = jobs("run", p, "--account", "nobody")
    assert r.returncode == 2 and "no account nobody (accounts: local)" in r.stderr


def test_backup_with_the_export_when_due_encrypted_and_audited(tmp_path):
    from pyrage import x25519

    from tests.conftest import require_tool

    identity = x25519.Identity.generate()
    p = write_jobs(tmp_path,
                   f'[accounts.local]\nsource = "{SAMPLE}"\nschedule = "0 0 1 1 *"\n'
                   f'destinations = [{{ to = "sqlite:///local.db" }}]\n'
                   f'backup = {{ to = "backups/local", encrypt_to = ["{identity.to_public()}"], keep_daily = 3, '
                   'schedule = "0 0 1 1 *" }\n')
    r = jobs("run", p)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "local    export  ok" in r.stdout and "local    backup  ok" in r.stdout
    state = tmp_path / "state" / "local"
    (log,) = [x for x in (state / "logs").glob("*.log") if "backups create" in x.read_text()]
    assert "--encrypt-to age1" in log.read_text() and "--keep-daily 3" in log.read_text()
    index = json.loads((state / "backups.json").read_text())["backups"]
    (stored,) = list((tmp_path / "backups" / "local").glob("*.zip.age"))
    assert [e["name"] for e in index] == [stored.name]
    lines = audit_lines(state / "audit.jsonl")
    assert [x["action"] for x in lines] == ["export", "backup"]
    backup = lines[1]["backup"]
    assert backup["sha256"] == index[0]["sha256"] and backup["archive_sha256"] == index[0]["archive"]["sha256"]
    assert lines[1]["counts"]["submissions"] == 50 and lines[1]["destinations"] == ["backups/local"]
    # the standard age tool decrypts it, and the archive inside verifies
    age = require_tool("age")
    key = tmp_path / "key.txt"
    key.write_text(str(identity) + "\n")
    plain = tmp_path / "restored.zip"
    subprocess.run([age, "-d", "-i", str(key), "-o", str(plain), str(stored)], check=True)
    v = subprocess.run([sys.executable, "-m", "exporter", "verify", str(plain)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("OK:")
    # nothing is due now; a run by name exports again, the backup waits for its schedule
    r = jobs("run", p, "--due")
    assert r.returncode == 0 and "local    export  not due" in r.stdout
    r = jobs("run", p)
    assert r.returncode == 0 and "local    export  ok" in r.stdout and "backup" not in r.stdout.split("\n", 1)[1]
    s = jobs("status", p)
    rows = [x.split() for x in s.stdout.splitlines()[1:]]
    assert [x[:2] for x in rows] == [["local", "export"], ["local", "backup"]] and rows[1][3] == "ok"
    assert len(json.loads((state / "backups.json").read_text())["backups"]) == 1


def test_a_runs_error_is_its_last_error_line_without_the_help_hint(tmp_path):
    from exporter.jobrun import _error_of

    log = tmp_path / "run.log"
    log.write_text("exporter export --source x\nError: unknown destination scheme 'bogus://' "
                   "(see 'exporter export --help')\n")
    assert _error_of(log) == "unknown destination scheme 'bogus://'"
    log.write_text("Error: HTTP 401 from the service (see the token)\n")
    assert _error_of(log) == "HTTP 401 from the service (see the token)"
