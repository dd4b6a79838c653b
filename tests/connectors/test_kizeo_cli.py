"""The CLI options of the web-service source (issue 16): --workers auto, --page-size, --skip, and
the fake's --max-answer and --refuse on `exporter serve`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from exporter.cli import cli
from exporter.testing.fake_server import FakeKizeoServer, Faults
from tests.conftest import wait_port

pytestmark = pytest.mark.network

TOKEN = "tok-cli-0123456789"


def invoke(*args):
    return CliRunner().invoke(cli, list(args), env={"KZ_TOKEN": TOKEN}, catch_exceptions=False)


@pytest.mark.parametrize("args, words", [
    (["--skip", "users,forms"], ["--skip", "users,groups,lists"]),
    (["--workers", "0"], ["--workers"]),
    (["--workers", "many"], ["--workers", "auto"]),
    (["--page-size", "0"], ["--page-size"]),
])
def test_bad_values_are_usage_errors_before_anything_is_read(args, words, tmp_path):
    r = invoke("export", "-s", "http://127.0.0.1:9/rest/v3", "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "o"), *args)
    assert r.exit_code == 2 and all(w in r.output for w in words), r.output
    assert not (tmp_path / "o").exists()


def test_workers_auto_exports_everything_despite_rate_limits(sample_archive, tmp_path):
    faults = Faults(rate_limit_every=9, retry_after=0)
    with FakeKizeoServer(str(sample_archive), TOKEN, faults=faults) as srv:
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "o"),
                   "--workers", "auto")
    assert r.exit_code == 0, r.output
    assert "50 submissions" in r.output and "99 media" in r.output


def test_page_size_sets_the_unread_page(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "o"),
                   "--incremental", "unread", "--action", "nightly", "--page-size", "7")
        assert r.exit_code == 0, r.output
        assert srv.request_count("/forms/*/data/unread/nightly/7") >= 2
        assert srv.request_count("/forms/*/data/unread/nightly/100") == 0
        # the files of a form read in pages are those of the form read at once
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(tmp_path / "p"),
                   "--incremental", "unread", "--action", "other", "--page-size", "1000")
        assert r.exit_code == 0, r.output
    assert _csv_files(tmp_path / "o") == _csv_files(tmp_path / "p")


def _csv_files(root):
    """CSV files by path, the run's own directory (runs/<run id>/) left out of the path."""
    out = {}
    for p in root.rglob("*.csv"):
        parts = p.relative_to(root).parts
        out["/".join(x for i, x in enumerate(parts) if i == 0 or parts[i - 1] != "runs")] = p.read_bytes()
    assert out
    return out


def test_served_with_refused_routes_and_a_bounded_search(sample_archive, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KZ_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--source", str(sample_archive), "--port",
                             str(port), "--token-env", "KZ_TOKEN", "--refuse", "users,lists", "--max-answer", "5"],
                            env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 200)
        url = f"http://127.0.0.1:{port}/rest/v3"
        db = f"sqlite:///{tmp_path / 'k.db'}"
        r = invoke("export", "-s", url, "--token-env", "KZ_TOKEN", "--to", db, "--incremental", "cursor")
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and "lacks the rights for a full export" in lines[0] and "--skip users" in lines[0]
        args = ["export", "-s", url, "--token-env", "KZ_TOKEN", "--to", db, "--incremental", "cursor",
                "--skip", "users,lists", "--overlap", "100000000"]
        r = invoke(*args)
        assert r.exit_code == 0 and "50 submissions" in r.output, r.output
        # the second run reads what changed since the stored cursor: every submission (huge overlap),
        # in windows of at most 5 (the service's 504 beyond)
        r = invoke(*args)
        assert r.exit_code == 0 and "50 submissions" in r.output, r.output
    finally:
        proc.terminate()
        proc.wait(10)
