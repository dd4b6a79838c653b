"""Errors that name their cause: connection failures in words, OS errors as one line naming the
path and the action, a busy port, a base URL without /rest/v3, clients that go away from `serve`."""
import os
import socket
import struct
import tempfile
import time

import pytest
from click.testing import CliRunner
from exporter.connectors.kizeo import KizeoClient, StaticToken

from exporter.cli import cli
from exporter.errors import SourceError, TransientSourceError
from exporter.testing.fake_server import FakeKizeoServer, Faults

TOKEN = "tok-0123456789abcdef"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env={"KZ": TOKEN, **(env or {})}, catch_exceptions=False)


def client(url, **kw):
    return KizeoClient(StaticToken(TOKEN), base_url=url, attempts=1, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_says_refused():
    port = closed_port()
    with pytest.raises(TransientSourceError) as e:
        client(f"http://127.0.0.1:{port}/rest/v3").list_forms()
    assert f"connection refused by 127.0.0.1:{port}" in str(e.value)
    assert "ConnectionError" not in str(e.value)


def test_unknown_host_says_dns():
    with pytest.raises(SourceError) as e:
        client("http://no-such-host.invalid/rest/v3").list_forms()
    assert "DNS" in str(e.value) and "no-such-host.invalid" in str(e.value)
    assert "ConnectionError" not in str(e.value)


def test_silent_server_says_timed_out():
    with socket.socket() as srv:  # accepts connections, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        with pytest.raises(TransientSourceError) as e:
            client(f"http://127.0.0.1:{srv.getsockname()[1]}/rest/v3", read_timeout=0.3).list_forms()
    assert "no answer within 0.3 s" in str(e.value) and "--timeout" in str(e.value)


def test_refused_from_the_cli_is_one_line():
    r = invoke("export", "-s", f"http://127.0.0.1:{closed_port()}/rest/v3", "--token-env", "KZ", "--to",
               tempfile.mkdtemp())
    assert r.exit_code == 1
    assert "connection refused" in r.output and "Traceback" not in r.output


def test_base_url_without_rest_v3_suggests_it(sample_archive, tmp_path):
    with FakeKizeoServer(str(sample_archive), TOKEN) as srv:
        bare = srv.base_url.removesuffix("/rest/v3")
        r = invoke("export", "-s", bare, "--token-env", "KZ", "--to", str(tmp_path / "o"))
        assert r.exit_code == 1
        assert f"did you mean {bare}/rest/v3?" in r.output
        r = invoke("forms", "-s", bare + "/", "--token-env", "KZ")
        assert f"did you mean {bare}/rest/v3?" in r.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.*"))


def test_serve_on_a_busy_port_names_it(sample_archive):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = invoke("serve", "-s", str(sample_archive), "--port", str(port), "--token-env", "KZ")
    assert r.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in r.output and "--port" in r.output
    assert "OSError" not in r.output and "Traceback" not in r.output


def test_serve_is_quiet_when_clients_go_away(sample_archive, capfd):
    with FakeKizeoServer(str(sample_archive), TOKEN, faults=Faults(latency=0.3)) as srv:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /rest/v3/forms HTTP/1.1\r\nHost: x\r\nAuthorization: " + TOKEN.encode() + b"\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # reset: the answer, written after the latency, meets a closed connection
        time.sleep(0.8)
        assert client(srv.base_url).list_forms()  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "ConnectionResetError" not in err


def test_unreadable_archive_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    source = locked / "account"
    if os.access(locked, os.R_OK):  # root reads anything: a path even root may not read
        source = "/proc/1/root"
        try:
            os.listdir(source)
            pytest.skip("no unreadable path on this machine")
        except PermissionError:
            pass
    try:
        r = invoke("export", "-s", str(source), "--to", str(tmp_path / "o"))
    finally:
        os.chmod(locked, 0o700)
    assert r.exit_code == 1
    line = r.output.strip()
    assert line.startswith(f"Error: cannot read the source {source}") and "permission denied" in line
    assert "PermissionError" not in line and len(line.splitlines()) == 1


def test_unwritable_archive_is_one_line(sample_archive, tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".acc.zip.x.partial"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = invoke("archive", "-s", str(sample_archive), "--out", str(tmp_path / "acc.zip"))
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: cannot write the archive {tmp_path / 'acc.zip'}: permission denied "
                                f"({tmp_path / '.acc.zip.x.partial'})")
    assert os.listdir(tmp_path) == []
