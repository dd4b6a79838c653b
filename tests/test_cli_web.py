"""The CLI against the fake web service over real HTTP: a real `exporter serve` process, faults,
a refused token and malformed answers, each a clear one-line error with no partial output."""
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from exporter.cli import cli
from exporter.testing.fake_server import FakeKizeoServer, Faults
from tests.conftest import wait_port

TOKEN = "tok-0123456789abcdef"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env={"KZ_TOKEN": TOKEN, **(env or {})}, catch_exceptions=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_then_export_and_archive(sample_archive, tmp_path):
    port = free_port()
    env = {**os.environ, "KZ_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--source", str(sample_archive),
                             "--port", str(port), "--token-env", "KZ_TOKEN", "--rate-limit-every", "7",
                             "--retry-after", "0.05", "--fail-every", "11", "--drop-every", "13"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, 100)
        url = f"http://127.0.0.1:{port}/rest/v3"
        out = tmp_path / "files"
        r = invoke("export", "--source", url, "--token-env", "KZ_TOKEN", "--to", str(out), "--format", "json,csv")
        assert r.exit_code == 0, r.output
        assert "50 submissions" in r.output and "99 media" in r.output
        assert TOKEN not in r.output
        arch = tmp_path / "acc.zip"
        r = invoke("archive", "--source", url, "--token-env", "KZ_TOKEN", "--out", str(arch))
        assert r.exit_code == 0, r.output
        assert invoke("verify", str(arch)).exit_code == 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_refused_token_is_one_line_and_no_output(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        out = tmp_path / "o"
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(out),
                   env={"KZ_TOKEN": "wrong-token-value"})
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and "wrong-token-value" not in r.output
        assert not any(p.is_file() and not p.name.startswith(".") for p in out.rglob("*")) if out.exists() else True


def test_missing_token_variable(sample_archive, tmp_path):
    r = CliRunner().invoke(cli, ["export", "-s", "http://127.0.0.1:9/rest/v3", "--token-env", "NOPE_NOT_SET",
                                 "--to", str(tmp_path)], env={"NOPE_NOT_SET": None})
    assert r.exit_code in (1, 2) and "NOPE_NOT_SET" in r.output


def test_malformed_json_fails_cleanly_with_nothing_published(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN, faults=Faults(malformed_paths=("/forms/1002/data/800003",))) as srv:
        out = tmp_path / "o"
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(out),
                   "--to", f"sqlite:///{tmp_path / 'x.db'}")
        assert r.exit_code == 1
        assert "JSON" in r.output and "800003" in r.output
        assert not list(out.rglob("*.csv")) and not list(out.rglob("*.partial"))
        assert not (out / ".exporter-state.json").exists()


def test_unknown_form_on_the_web_service(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        r = invoke("export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--form", "4242", "--to", str(tmp_path / "o"))
        assert r.exit_code == 1 and "4242" in r.output
        assert not (tmp_path / "o" / "forms").exists()


@pytest.mark.parametrize("mode", ["cursor", "unread"])
def test_incremental_modes_from_the_cli(sample_archive, tmp_path, mode):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        out = tmp_path / "o"
        extra = ["--action", "nightly"] if mode == "unread" else []
        args = ["export", "-s", srv.base_url, "--token-env", "KZ_TOKEN", "--to", str(out), "--incremental", mode, *extra]
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        assert "50 submissions" in r.output
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        if mode == "unread":
            assert "0 submissions" in r.output  # everything was marked read after the first commit
