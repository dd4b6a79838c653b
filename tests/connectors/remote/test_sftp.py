"""SFTP (paramiko client) against a real asyncssh SFTP server on loopback."""
from __future__ import annotations

import io
import json

import pytest
from exporter.connectors.remote import create_remote, create_sink
from exporter.connectors.remote.sink import STATE_FILE

from exporter.errors import ConfigError, SinkError, TransientSinkError

from .conftest import FAST, ctx, make_records, run, tree


def partials(root):
    return [p for p in root.rglob("*") if ".partial" in p.name]


@pytest.fixture
def opts(sftp_server, password_env):
    return {"password_env": password_env, "known_hosts": str(sftp_server.known_hosts), **FAST}


def test_upload_rerun_and_change(sftp_server, opts):
    run(create_sink(sftp_server.url("/nightly/out"), opts), make_records(), ctx(("json", "csv")))
    root = sftp_server.root / "nightly" / "out"
    files = tree(root)
    assert sum("/media/" in k for k in files) == 3 and any(k.endswith(".csv") for k in files)
    assert json.loads(files[STATE_FILE])["cursors"] == {"101": "2024-05-03 10:00:00"}
    assert not partials(root)

    sftp_server.hooks.stored.clear()
    sink = create_sink(sftp_server.url("/nightly/out"), opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert sftp_server.hooks.stored == [] and sink.stats.uploaded == 0

    sftp_server.hooks.stored.clear()
    run(create_sink(sftp_server.url("/nightly/out"), opts), make_records(version=2), ctx(("json", "csv")))
    sent = sftp_server.hooks.stored_data()
    assert sent and all(p.endswith(".partial") for p in sent)
    assert not any("/media/" in p for p in sent)
    assert b"comment 1 v2" in b"".join(tree(root).values())


def test_key_authentication_with_passphrase_from_env(sftp_server, monkeypatch):
    monkeypatch.setenv("KEY_PASS", sftp_server.client_key_passphrase)
    opts = {"key_file": str(sftp_server.client_key), "key_passphrase_env": "KEY_PASS",
            "known_hosts": str(sftp_server.known_hosts), **FAST}
    run(create_sink(sftp_server.url("/bykey"), opts), make_records())
    assert tree(sftp_server.root / "bykey")


def test_encrypted_key_without_passphrase_is_a_config_error(sftp_server):
    opts = {"key_file": str(sftp_server.client_key), "known_hosts": str(sftp_server.known_hosts), **FAST}
    with pytest.raises((ConfigError, SinkError), match="passphrase|key"):
        run(create_sink(sftp_server.url("/bykey"), opts), make_records())


def test_wrong_password_is_a_terminal_login_error(sftp_server, monkeypatch):
    monkeypatch.setenv("BAD_PW", "wrong")
    opts = {"password_env": "BAD_PW", "known_hosts": str(sftp_server.known_hosts), **FAST}
    with pytest.raises(SinkError, match=r"login refused for user 'alice'") as e:
        run(create_sink(sftp_server.url(), opts), make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert "wrong" not in str(e.value)


def test_a_port_nothing_listens_on_says_connection_refused(password_env, tmp_path):
    """paramiko's "[Errno None] Unable to connect to port N" became the reason in words."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {"password_env": password_env, "known_hosts": str(tmp_path / "kh"), **FAST}
    with pytest.raises(TransientSinkError) as e:
        run(create_sink(f"sftp://alice@127.0.0.1:{port}/x", opts), make_records())
    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in str(e.value)
    assert "Errno" not in str(e.value)


def test_unknown_host_key_is_refused_with_how_to_trust_it(sftp_server, password_env, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opts = {"password_env": password_env, "known_hosts": str(empty), **FAST}
    with pytest.raises(SinkError) as e:
        run(create_sink(sftp_server.url(), opts), make_records())
    msg = str(e.value)
    assert not isinstance(e.value, TransientSinkError)
    assert f"[127.0.0.1]:{sftp_server.port}" in msg and "unknown" in msg and "SHA256:" in msg
    assert f"ssh-keyscan -p {sftp_server.port} 127.0.0.1" in msg and "trust_on_first_use" in msg
    assert sftp_server.hooks.stored == [] and empty.read_text() == ""


def test_missing_known_hosts_file_is_an_unknown_host(sftp_server, password_env, tmp_path):
    opts = {"password_env": password_env, "known_hosts": str(tmp_path / "nope" / "known_hosts"), **FAST}
    with pytest.raises(SinkError, match="unknown"):
        run(create_sink(sftp_server.url(), opts), make_records())
    assert not (tmp_path / "nope").exists()


def test_trust_on_first_use_records_the_key(sftp_server, password_env, tmp_path):
    known = tmp_path / "ssh" / "known_hosts"
    opts = {"password_env": password_env, "known_hosts": str(known), "trust_on_first_use": True, **FAST}
    run(create_sink(sftp_server.url("/tofu"), opts), make_records())
    line = known.read_text()
    assert f"[127.0.0.1]:{sftp_server.port} ssh-ed25519 " in line
    assert sftp_server.host_key_line.split()[2] in line
    # from now on the key is known: it works without the opt-in
    opts["trust_on_first_use"] = False
    run(create_sink(sftp_server.url("/tofu"), opts), make_records())


def test_changed_host_key_is_always_refused(sftp_server, password_env, tmp_path):
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sftp_server.port} {' '.join(other)}\n")
    for tofu in (False, True):
        opts = {"password_env": password_env, "known_hosts": str(known), "trust_on_first_use": tofu, **FAST}
        with pytest.raises(SinkError, match="HOST KEY CHANGED"):
            run(create_sink(sftp_server.url(), opts), make_records())
    assert sftp_server.hooks.stored == []


def test_permission_denied(sftp_server, opts):
    (sftp_server.root / "export").mkdir()
    with pytest.raises(SinkError, match="permission denied") as e:
        run(create_sink(sftp_server.url("/export", user="reader"), opts), make_records())
    assert not isinstance(e.value, TransientSinkError)
    assert "sftp://reader@127.0.0.1" in str(e.value)
    assert tree(sftp_server.root) == {}


def test_disk_full_is_clear_and_leaves_nothing_partial(sftp_server, opts):
    sftp_server.hooks.disk_full = "*photo-2.jpg*"
    with pytest.raises(SinkError, match="disk full or quota exceeded") as e:
        run(create_sink(sftp_server.url(), opts), make_records())
    assert not isinstance(e.value, TransientSinkError) and "photo-2.jpg" in str(e.value)
    root = sftp_server.root / "export"
    assert not partials(root) and not list(root.rglob("photo-2.jpg"))
    assert not (root / STATE_FILE).exists()


def test_connection_killed_mid_upload_never_shows_a_partial_file(sftp_server, opts):
    sftp_server.hooks.kill = "*photo-3.jpg*"
    with pytest.raises(TransientSinkError):
        run(create_sink(sftp_server.url(), opts), make_records())
    assert sftp_server.hooks.killed == FAST["retries"] + 1
    root = sftp_server.root / "export"
    assert not list(root.rglob("photo-3.jpg"))
    assert not partials(root)
    assert not (root / STATE_FILE).exists()


def test_connection_killed_once_is_retried(sftp_server, opts):
    sftp_server.hooks.kill, sftp_server.hooks.kill_times = "*photo-3.jpg*", 1
    records = make_records()
    run(create_sink(sftp_server.url(), opts), records)
    root = sftp_server.root / "export"
    (photo,) = root.rglob("photo-3.jpg")
    with records[-2].open() as fh:
        assert photo.read_bytes() == fh.read()
    assert sftp_server.hooks.killed == 1 and not partials(root)


def test_path_too_long_is_refused_before_uploading(sftp_server, opts):
    opts = {**opts, "max_path_length": 80}
    with pytest.raises(SinkError, match="path too long"):
        run(create_sink(sftp_server.url(), opts), make_records(form_name="Contrôle des équipements de protection"),
            batch=100)
    assert sftp_server.hooks.stored == []


def test_forbidden_characters_option(sftp_server, opts):
    run(create_sink(sftp_server.url(), {**opts, "forbidden_chars": "#%"}), make_records(form_name="Lot #4 à 100%"))
    names = [p.name for p in (sftp_server.root / "export").rglob("*")]
    assert any(n.startswith("101-Lot _4 à 100_~") for n in names), names


def test_remote_operations(sftp_server, opts):
    opts = {k: v for k, v in opts.items() if k not in FAST}  # the remote's own options (FAST: the sink's)
    remote = create_remote(sftp_server.url("/a/b"), opts)
    remote.connect()
    try:
        assert remote.root == "/a/b"
        remote.put("x.txt", io.BytesIO(b"hello"), 5)
        assert remote.stat("x.txt").size == 5
        assert remote.stat("missing.txt") is None and remote.stat("") is None
        buf = io.BytesIO()
        assert remote.get("x.txt", buf) and buf.getvalue() == b"hello"
        remote.mkdir("c/d")
        remote.mkdir("c/d")
        remote.put("c/d/y.txt", io.BytesIO(b"1"), 1)
        remote.rename("c/d/y.txt", "x.txt")  # posix-rename: replaces the target atomically
        assert remote.stat("x.txt").size == 1 and remote.stat("c/d/y.txt") is None
        remote.delete("x.txt")
        remote.delete("x.txt")
    finally:
        remote.close()
    home = create_remote(sftp_server.url("/~/rel"), opts)
    home.connect()
    home.close()
    assert home.root == "/rel"  # the chrooted login folder is "/"


def test_a_remote_with_its_own_formats_beside_a_local_folder(sftp_server, password_env, sample_archive, tmp_path):
    """One run, two destinations: a local folder in the run's ``--format json`` and an SFTP
    remote with its own ``-o formats=csv`` (after its --to): each holds only its formats."""
    from click.testing import CliRunner

    from exporter.cli import cli

    local = tmp_path / "local"
    r = CliRunner().invoke(cli, [
        "-q", "export", "-s", str(sample_archive), "--format", "json", "--to", str(local),
        "--to", sftp_server.url("/both"), "-o", "formats=csv", "-o", f"password_env={password_env}",
        "-o", f"known_hosts={sftp_server.known_hosts}", "-o", "retries=2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    remote = sftp_server.root / "both"

    def suffixes(root):
        return {p.suffix for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                and p.suffix in (".json", ".csv", ".xlsx")}

    assert suffixes(local) == {".json"}
    assert suffixes(remote) == {".csv"}
    assert (remote / "users.csv").is_file() and not (remote / "users.json").exists()
    assert (local / "users.json").is_file() and not (local / "users.csv").exists()
