"""FTP and FTPS against a real pyftpdlib server on loopback."""
from __future__ import annotations

import io
import json
import socket
import ssl

import pytest
from exporter.connectors.remote import create_remote, create_sink
from exporter.connectors.remote.sink import MANIFEST_FILE, STATE_FILE

from exporter.errors import SinkError, TransientSinkError

from .conftest import FAST, PASSWORD, ctx, make_records, run, tree


def partials(root):
    return [p for p in root.rglob("*") if ".partial" in p.name]


def test_ftps_upload_with_verified_certificate(ftps_server, password_env):
    opts = {"password_env": password_env, "ca_file": ftps_server.ca_file, **FAST}
    run(create_sink(ftps_server.url("secure"), opts), make_records(), ctx(("json", "csv")))
    files = tree(ftps_server.root / "secure")
    assert sum("/media/" in k for k in files) == 3 and any(k.endswith(".csv") for k in files)
    assert json.loads(files[STATE_FILE])["cursors"] == {"101": "2024-05-03 10:00:00"}
    # and a re-run over TLS sends nothing
    ftps_server.hooks.stored.clear()
    run(create_sink(ftps_server.url("secure"), opts), make_records(), ctx(("json", "csv")))
    assert ftps_server.hooks.stored == []


def test_ftps_refuses_an_untrusted_certificate(ftps_server, password_env):
    sink = create_sink(ftps_server.url("secure"), {"password_env": password_env, **FAST})
    with pytest.raises(SinkError, match=r"certificate of 127\.0\.0\.1 not trusted.*ca_file") as e:
        run(sink, make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert not (ftps_server.root / "secure").exists()


def test_ftps_context_verifies_certificate_and_host_name(ftps_server):
    remote = create_remote(ftps_server.url(), {"ca_file": ftps_server.ca_file})
    context = remote._context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_wrong_password_is_a_terminal_login_error(ftp_server, monkeypatch):
    monkeypatch.setenv("BAD_PW", "wrong")
    sink = create_sink(ftp_server.url(), {"password_env": "BAD_PW", **FAST})
    with pytest.raises(SinkError, match=r"login refused for user 'alice'.*password_env") as e:
        run(sink, make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert "wrong" not in str(e.value)


def test_password_from_file(ftp_server, tmp_path):
    pw = tmp_path / "ftp-password"
    pw.write_text(PASSWORD + "\n")
    run(create_sink(ftp_server.url("viafile"), {"password_file": str(pw), **FAST}), make_records())
    assert tree(ftp_server.root / "viafile")


def test_permission_denied(ftp_server, password_env):
    (ftp_server.root / "export").mkdir()
    sink = create_sink(ftp_server.url("export", user="reader"), {"password_env": password_env, **FAST})
    with pytest.raises(SinkError, match=r"permission denied.*") as e:
        run(sink, make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert "ftp://reader@127.0.0.1" in str(e.value)
    assert tree(ftp_server.root) == {}


def test_disk_full_552_is_clear_and_leaves_nothing_partial(ftp_server, password_env):
    ftp_server.hooks.disk_full = "*photo-2.jpg*"
    sink = create_sink(ftp_server.url(), {"password_env": password_env, **FAST})
    with pytest.raises(SinkError, match="disk full or quota exceeded") as e:
        run(sink, make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert "photo-2.jpg" in str(e.value)
    root = ftp_server.root / "export"
    assert not partials(root) and not list(root.rglob("photo-2.jpg"))
    assert not (root / STATE_FILE).exists()
    # the one media sent before the failure is recorded, so the next run does not resend it
    assert "forms/101-Visite chantier/media/1001/photo-1.jpg" in json.loads((root / MANIFEST_FILE).read_text())["files"]


def test_connection_killed_mid_upload_never_shows_a_partial_file(ftp_server, password_env):
    ftp_server.hooks.kill = "*photo-3.jpg*"  # every attempt is cut after the first kilobyte
    sink = create_sink(ftp_server.url(), {"password_env": password_env, **FAST})
    with pytest.raises(TransientSinkError):
        run(sink, make_records())
    assert ftp_server.hooks.killed == FAST["retries"] + 1
    root = ftp_server.root / "export"
    assert not list(root.rglob("photo-3.jpg"))  # the final name never existed
    assert not partials(root)  # the cut temporary uploads were removed
    assert not (root / STATE_FILE).exists()


def test_connection_killed_once_is_retried_on_a_new_connection(ftp_server, password_env):
    ftp_server.hooks.kill, ftp_server.hooks.kill_times = "*photo-3.jpg*", 1
    sink = create_sink(ftp_server.url(), {"password_env": password_env, **FAST})
    records = make_records()
    run(sink, records)
    root = ftp_server.root / "export"
    (photo,) = root.rglob("photo-3.jpg")
    with records[-2].open() as fh:
        assert photo.read_bytes() == fh.read()
    assert ftp_server.hooks.killed == 1 and not partials(root)


def test_connection_refused_is_transient(password_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = create_sink(f"ftp://alice@127.0.0.1:{port}/x", {"password_env": password_env, **FAST})
    with pytest.raises(TransientSinkError, match="connection failed"):
        run(sink, make_records())


def test_path_too_long_is_refused_before_uploading(ftp_server, password_env):
    sink = create_sink(ftp_server.url(), {"password_env": password_env, "max_path_length": 80, **FAST})
    with pytest.raises(SinkError, match="path too long"):
        run(sink, make_records(form_name="Contrôle des équipements de protection individuelle"), batch=100)
    assert ftp_server.hooks.stored == []


def test_forbidden_characters_option(ftp_server, password_env):
    opts = {"password_env": password_env, "forbidden_chars": "#%", **FAST}
    run(create_sink(ftp_server.url(), opts), make_records(form_name="Lot #4 à 100%"))
    names = [p.name for p in (ftp_server.root / "export").rglob("*")]
    assert any(n.startswith("101-Lot _4 à 100_~") for n in names), names
    assert not any("#" in n or "%" in n for n in names)


def test_absolute_and_relative_roots(ftp_server, password_env):
    remote = create_remote(ftp_server.url("a/b"), {"password_env": password_env})
    remote.connect()
    try:
        assert remote.root == "/a/b"  # relative to the login folder, "/" for this user
        remote.put("x.txt", io.BytesIO(b"hello"), 5)
        assert remote.stat("x.txt").size == 5
        assert remote.stat("missing.txt") is None
        assert remote.stat("") is None  # a folder is not a file
        buf = io.BytesIO()
        assert remote.get("x.txt", buf) and buf.getvalue() == b"hello"
        assert remote.get("nope.txt", io.BytesIO()) is False
        remote.mkdir("c/d/e")
        remote.mkdir("c/d/e")  # no error when it exists
        remote.put("c/d/e/y.txt", io.BytesIO(b"1"), 1)
        remote.rename("c/d/e/y.txt", "x.txt")  # replaces the target
        assert remote.stat("x.txt").size == 1
        remote.delete("x.txt")
        remote.delete("x.txt")  # no error when it is gone
        assert remote.stat("x.txt") is None
    finally:
        remote.close()
    assert (ftp_server.root / "a" / "b" / "c" / "d" / "e").is_dir()
    absolute = create_remote(f"ftp://alice@127.0.0.1:{ftp_server.port}//abs/dir", {"password_env": password_env})
    absolute.connect()
    absolute.close()
    assert absolute.root == "/abs/dir" and (ftp_server.root / "abs" / "dir").is_dir()


@pytest.mark.parametrize("mlsd", [True, False], ids=["mlsd", "nlst"])
def test_walk_lists_the_whole_tree(ftp_server, password_env, mlsd):
    """``walk`` with MLSD, and without it (a server answering 500) with NLST then CWD/SIZE."""
    ftp_server.hooks.no_mlsd = not mlsd
    (ftp_server.root / "w" / "a b" / "c").mkdir(parents=True)
    (ftp_server.root / "w" / "empty").mkdir()
    (ftp_server.root / "w" / "top.txt").write_bytes(b"12345")
    (ftp_server.root / "w" / "a b" / "x y.csv").write_bytes(b"1")
    (ftp_server.root / "w" / "a b" / "c" / "deep.json").write_bytes(b"{}" * 100)
    remote = create_remote(ftp_server.url("w"), {"password_env": password_env})
    remote.connect()
    try:
        got = {rel: st.size for rel, st in remote.walk("")}
        assert got == {"top.txt": 5, "a b/x y.csv": 1, "a b/c/deep.json": 200}
        assert {rel: st.size for rel, st in remote.walk("a b")} == {"x y.csv": 1, "c/deep.json": 200}
        assert list(remote.walk("missing")) == []
        assert remote._mlsd_ok is mlsd
    finally:
        remote.close()
