"""The Dropbox remote through the real ``dropbox`` SDK against a loopback HTTPS fake of API v2."""
from __future__ import annotations

import io
import json
import os
import time

import pytest
from exporter.connectors.remote.base import ChunkedRemote, Remote, local_checksum
from exporter.connectors.remote.dropbox_remote import DropboxRemote, create_remote

from exporter.errors import ConfigError, SinkError, TransientSinkError

from .conftest import serve_fake, upload_file
from .fake_dropbox import FakeDropbox, content_hash

pytestmark = pytest.mark.network


@pytest.fixture()
def fake(tls):
    yield from serve_fake(FakeDropbox, tls)


def make_remote(fake, tls, monkeypatch, root="/exports", token="good-token", **options) -> DropboxRemote:
    monkeypatch.setenv("TEST_DBX_TOKEN", token)
    opts = {"token_env": "TEST_DBX_TOKEN", "api_host": fake.host, "ca_certs": str(tls[0]),
            "simple_upload_limit": 64 * 1024, "chunk_size": 32 * 1024, "retry_max_delay": 5}
    opts.update(options)
    remote = create_remote(f"dropbox://{root}", opts)
    remote.connect()
    return remote


@pytest.fixture()
def remote(fake, tls, monkeypatch):
    r = make_remote(fake, tls, monkeypatch)
    yield r
    r.close()


def payload(n: int, seed: int = 7) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n] if seed == 7 else os.urandom(n)


def test_protocols_and_capabilities(remote):
    assert isinstance(remote, Remote) and isinstance(remote, ChunkedRemote)
    caps = remote.capabilities
    assert caps.checksum == "dropbox" and caps.case_insensitive
    assert caps.max_simple_upload == 150 * 1024 * 1024
    assert caps.max_path_length == 259  # the whole path, root included: the remote sink counts the root in
    assert "token" not in repr(remote).lower() or "good-token" not in repr(remote)


def test_small_upload_stat_and_skip_identical(remote, fake, tmp_path):
    data = b"hello dropbox\n" * 100
    upload_file(remote, tmp_path, "a/b/hello.txt", data)
    assert fake.read("/exports/a/b/hello.txt") == data
    assert len(fake.calls("/2/files/upload")) == 1
    st = remote.stat("a/b/hello.txt")
    assert st is not None and st.size == len(data)
    # skip-identical: the remote's checksum equals the local Dropbox content hash
    src = tmp_path / "src.bin"
    assert st.checksum == local_checksum("dropbox", src) == content_hash(data)
    assert remote.stat("a/b/missing.txt") is None
    # case-insensitive names, like the real service
    assert remote.stat("A/B/HELLO.TXT") == st


def test_upload_overwrites(remote, fake, tmp_path):
    upload_file(remote, tmp_path, "f.txt", b"first version")
    upload_file(remote, tmp_path, "f.txt", b"second")
    assert fake.read("/exports/f.txt") == b"second"


def test_chunked_upload_several_chunks(remote, fake, tmp_path):
    data = payload(5 * 1024 * 1024 + 12345, seed=0)  # > one 4 MiB hash block
    upload_file(remote, tmp_path, "big/blob.bin", data, chunk=1024 * 1024)
    assert fake.read("/exports/big/blob.bin") == data
    assert len(fake.calls("upload_session/start")) == 1
    assert len(fake.calls("upload_session/append_v2")) == 5
    assert len(fake.calls("upload_session/finish")) == 1
    assert not fake.calls("/2/files/upload")  # no single-shot upload
    assert remote.stat("big/blob.bin").checksum == local_checksum("dropbox", tmp_path / "src.bin")


def test_put_switches_to_session_above_simple_limit(remote, fake, tmp_path):
    data = payload(200 * 1024)  # simple_upload_limit is 64 KiB in these tests, chunk 32 KiB
    upload_file(remote, tmp_path, "auto.bin", data)
    assert fake.read("/exports/auto.bin") == data
    assert len(fake.calls("upload_session/append_v2")) == 200 // 32 - 1 + (1 if 200 % 32 else 0)


def test_rename_replaces_destination(remote, fake, tmp_path):
    upload_file(remote, tmp_path, "out/report.csv.abc123.partial", b"new data")
    upload_file(remote, tmp_path, "out/report.csv", b"old data")
    remote.rename("out/report.csv.abc123.partial", "out/report.csv")
    assert fake.read("/exports/out/report.csv") == b"new data"
    assert remote.stat("out/report.csv.abc123.partial") is None
    # first move answered to/conflict, then the destination was deleted and the move retried
    assert [r.fault for r in fake.calls("move_v2")] == [None, None]
    assert len(fake.calls("delete_v2")) == 1
    # plain rename without conflict: one call
    remote.rename("out/report.csv", "out/final.csv")
    assert fake.read("/exports/out/final.csv") == b"new data"


def test_mkdir_and_delete_are_idempotent(remote, fake, tmp_path):
    remote.mkdir("x/y")
    remote.mkdir("x/y")  # conflict/folder ignored
    assert "/exports/x/y" in fake.folders
    upload_file(remote, tmp_path, "x/y/z.txt", b"z")
    remote.delete("x/y/z.txt")
    remote.delete("x/y/z.txt")  # not_found ignored
    assert remote.stat("x/y/z.txt") is None
    upload_file(remote, tmp_path, "file", b"a file")
    with pytest.raises(SinkError, match="conflict"):
        remote.mkdir("file")


def test_429_retried_honouring_retry_after(remote, fake, tmp_path):
    fake.throttle("/2/files/upload", retry_after=1)
    started = time.monotonic()
    upload_file(remote, tmp_path, "throttled.txt", b"patience")
    assert time.monotonic() - started >= 1.0
    assert [r.fault for r in fake.calls("/2/files/upload")] == ["status", None]
    assert fake.read("/exports/throttled.txt") == b"patience"


def test_429_exhausted_is_transient_with_retry_after(fake, tls, monkeypatch, tmp_path):
    remote = make_remote(fake, tls, monkeypatch, attempts=1)
    fake.throttle("get_metadata", retry_after=3)
    with pytest.raises(TransientSinkError) as ei:
        remote.stat("x")
    assert ei.value.retry_after == 3 and "too_many_requests" in str(ei.value)


@pytest.mark.parametrize("kind", ["drop_before", "drop_after"])
def test_dropped_connection_mid_session_resumes(remote, fake, tmp_path, kind):
    data = payload(300 * 1024, seed=0)
    # the 3rd append loses its connection: before (data lost) or after the fake stored it
    fake.inject("upload_session/append_v2", kind, skip=2)
    upload_file(remote, tmp_path, "resumed.bin", data, chunk=40 * 1024)
    assert fake.read("/exports/resumed.bin") == data
    offsets = [a["cursor"]["offset"] for a in fake.args("upload_session/append_v2")]
    assert offsets.count(3 * 40 * 1024) == 2  # the dropped chunk was sent again at the same offset
    if kind == "drop_after":
        # the server already had it: it answered incorrect_offset and the upload continued from there
        assert offsets.count(4 * 40 * 1024) == 1 and offsets == sorted(offsets)
    assert remote.stat("resumed.bin").checksum == local_checksum("dropbox", tmp_path / "src.bin")


def test_dropped_connection_on_finish_is_verified(remote, fake, tmp_path):
    data = payload(100 * 1024, seed=0)
    fake.inject("upload_session/finish", "drop_after")  # committed, but the answer is lost
    upload_file(remote, tmp_path, "fin.bin", data, chunk=40 * 1024)
    assert fake.read("/exports/fin.bin") == data
    assert len(fake.calls("upload_session/finish")) == 2


def test_wrong_token_is_a_clear_error(fake, tls, monkeypatch):
    with pytest.raises(SinkError, match="Dropbox refused the token") as ei:
        make_remote(fake, tls, monkeypatch, token="bad-token")
    assert not isinstance(ei.value, TransientSinkError)
    assert "bad-token" not in str(ei.value)


def test_refresh_token_flow(fake, tls, monkeypatch, tmp_path):
    fake.refresh_tokens["refresh-1"] = "app-key-1"
    monkeypatch.delenv("DROPBOX_TOKEN", raising=False)
    monkeypatch.setenv("DROPBOX_REFRESH_TOKEN", "refresh-1")
    monkeypatch.setenv("DROPBOX_APP_KEY", "app-key-1")
    remote = create_remote("dropbox:///r", {"api_host": fake.host, "ca_certs": str(tls[0])})
    remote.connect()
    upload_file(remote, tmp_path, "t.txt", b"refreshed")
    assert fake.read("/r/t.txt") == b"refreshed"
    assert len(fake.calls("/oauth2/token")) == 1


def test_token_file_and_missing_secrets(fake, tls, monkeypatch, tmp_path):
    (tmp_path / "tok").write_text("good-token\n")
    remote = create_remote("dropbox:///", {"token_file": str(tmp_path / "tok"), "api_host": fake.host,
                                           "ca_certs": str(tls[0])})
    remote.connect()
    upload_file(remote, tmp_path, "root.txt", b"at the root")
    assert fake.read("/root.txt") == b"at the root"
    for var in ("DROPBOX_TOKEN", "DROPBOX_REFRESH_TOKEN", "DROPBOX_APP_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="DROPBOX_TOKEN"):
        create_remote("dropbox:///x", {})
    with pytest.raises(ConfigError, match="secrets come from"):
        create_remote("dropbox:///x", {"token": "inline"})
    with pytest.raises(ConfigError, match="token file .* does not exist"):
        create_remote("dropbox:///x", {"token_file": str(tmp_path / "nope")})


def test_tls_is_verified(fake, monkeypatch):
    monkeypatch.setenv("TEST_DBX_TOKEN", "good-token")
    remote = create_remote("dropbox:///x", {"token_env": "TEST_DBX_TOKEN", "api_host": fake.host, "attempts": 1})
    with pytest.raises(SinkError, match="TLS verification"):
        remote.connect()


def test_quota_is_a_clear_error(remote, fake, tmp_path):
    fake.quota = 1000
    with pytest.raises(SinkError, match="out of space") as ei:
        upload_file(remote, tmp_path, "q/too-big.bin", b"x" * 2000)
    assert "/exports/q/too-big.bin" in str(ei.value)
    with pytest.raises(SinkError, match="out of space"):
        upload_file(remote, tmp_path, "q/too-big-chunked.bin", b"y" * 3000, chunk=1024)
    assert fake.files == {}


@pytest.mark.parametrize("rel, why", [
    ("dir/" + "n" * 256 + ".txt", "longer than 255"),
    ("/".join(["d" * 50] * 5) + "/f.txt", "Dropbox allows 259"),
    ("bad:name.txt", "does not allow"),
    ("what?.txt", "does not allow"),
    ("back\\slash.txt", "does not allow"),
    ("trailing. ", "ends with a space"),
    ("desktop.ini", "ignored by Dropbox"),
    ("../escape.txt", "may not contain"),
])
def test_bad_paths_refused_before_any_upload(remote, fake, tmp_path, rel, why):
    with pytest.raises(SinkError, match=why):
        upload_file(remote, tmp_path, rel, b"data")
    with pytest.raises(SinkError, match=why):
        upload_file(remote, tmp_path, rel, b"data" * 100, chunk=64)
    assert not fake.calls("upload")


def test_malformed_path_from_server_names_the_path(remote, fake, tmp_path):
    # a refusal our local rules cannot foresee (the server has its own): the answer names the path
    fake.inject("/2/files/upload", status=409, body={
        "error_summary": "path/malformed_path/", "error": {".tag": "path", "reason": {".tag": "malformed_path"},
                                                           "upload_session_id": "x"}})
    with pytest.raises(SinkError, match="refused the path") as ei:
        upload_file(remote, tmp_path, "odd.txt", b"data")
    assert "/exports/odd.txt" in str(ei.value)


def test_too_many_write_operations_is_retried(remote, fake, tmp_path):
    fake.inject("/2/files/upload", status=409, body={
        "error_summary": "path/too_many_write_operations/",
        "error": {".tag": "path", "reason": {".tag": "too_many_write_operations"}, "upload_session_id": "x"}})
    upload_file(remote, tmp_path, "busy.txt", b"eventually")
    assert fake.read("/exports/busy.txt") == b"eventually"


def test_non_seekable_stream_uploads_in_order(remote, fake):
    data = payload(150 * 1024, seed=0)

    class OneWay(io.RawIOBase):
        def __init__(self):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            chunk = self._b.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    remote.put_chunked("stream.bin", io.BufferedReader(OneWay()), len(data), 64 * 1024)
    assert fake.read("/exports/stream.bin") == data


def test_server_error_then_success(remote, fake, tmp_path):
    fake.inject("/2/files/upload", status=503, body="upstream busy", headers={"Content-Type": "text/plain"})
    upload_file(remote, tmp_path, "after503.txt", b"ok")
    assert fake.read("/exports/after503.txt") == b"ok"


def test_get_streams_a_file_back(remote, fake, tmp_path):
    data = os.urandom(300 * 1024)
    upload_file(remote, tmp_path, "état/données é.bin", data)  # non-ASCII names travel in headers
    assert fake.read("/exports/état/données é.bin") == data
    buf = io.BytesIO(b"stale")
    assert remote.get("état/données é.bin", buf) is True
    assert buf.getvalue() == data
    assert remote.get("état/absent.bin", io.BytesIO()) is False
    fake.inject("/2/files/download", "drop_before")
    buf = io.BytesIO()
    assert remote.get("état/données é.bin", buf) is True and buf.getvalue() == data


def test_remote_sink_end_to_end(fake, tls, monkeypatch, tmp_path):
    """The generic RemoteSink over this remote: every file lands, a re-run sends nothing."""
    from exporter.connectors.files import FilesSink
    from exporter.connectors.remote import create_sink

    from .conftest import FAST, ctx, make_records, run, tree

    monkeypatch.setenv("TEST_DBX_TOKEN", "good-token")
    opts = {**FAST, "token_env": "TEST_DBX_TOKEN", "api_host": fake.host, "ca_certs": str(tls[0])}
    records = make_records()
    run(create_sink("dropbox:///nightly", opts), records, ctx(("json", "csv")))
    run(FilesSink(tmp_path / "local", {}), make_records(), ctx(("json", "csv")))
    expected = {f"/nightly/{k}".lower(): v for k, v in tree(tmp_path / "local").items()
                if not k.startswith(".exporter")}
    stored = {k: f.data for k, f in fake.files.items() if "/.exporter-" not in k}
    assert stored == expected and not [k for k in fake.files if ".partial" in k]
    assert any(k.endswith(".exporter-state.json") for k in fake.files)

    uploads = len(fake.calls("upload"))
    sink = create_sink("dropbox:///nightly", opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert sink.stats.uploaded == 0 and sink.stats.skipped == len(expected)  # content hashes matched
    assert len([c for c in fake.calls("upload") if ".exporter-" not in json.dumps(fake_arg(c))]) == \
        len([c for c in fake.calls("upload")[:uploads] if ".exporter-" not in json.dumps(fake_arg(c))])


def fake_arg(req):
    raw = req.headers.get("dropbox-api-arg")
    return json.loads(raw) if raw else json.loads(req.body or b"null")


def test_ca_certs_wins_over_the_ca_bundle_variables(fake, tls, monkeypatch, tmp_path):
    """``ca_certs`` is pinned on the session's transport: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE naming
    another bundle (which requests would otherwise put in its place on every request) do not
    override it, and verification stays on."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # a real bundle, without the fake's CA
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    remote = make_remote(fake, tls, monkeypatch)
    try:
        upload_file(remote, tmp_path, "pinned/ca.txt", b"verified against ca_certs\n")
    finally:
        remote.close()
    assert fake.read("/exports/pinned/ca.txt") == b"verified against ca_certs\n"
    # the variables are in force in this process: without ca_certs, the wrong bundle is used and refused
    with pytest.raises(SinkError, match="(?i)certificate|ssl"):
        make_remote(fake, tls, monkeypatch, ca_certs=None, attempts=1)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[0]))  # ... and the fake's CA through them is accepted
    make_remote(fake, tls, monkeypatch, ca_certs=None).close()


def test_walk_pages_through_list_folder_continue(remote, fake, tmp_path):
    names = ["a.txt", "Sub/b.csv", "Sub/deeper/c.json", "z/d.bin", "z/e.bin"]
    for i, rel in enumerate(names):
        upload_file(remote, tmp_path, rel, b"x" * (i + 1))
    fake.page_size = 2  # several pages: the cursor is followed while has_more
    got = {rel: st for rel, st in remote.walk("")}
    assert {rel: st.size for rel, st in got.items()} == {rel: i + 1 for i, rel in enumerate(names)}
    assert got["a.txt"].checksum == content_hash(b"x")
    assert len(fake.calls("/2/files/list_folder/continue")) >= 3
    assert all(a == {"path": "/exports", "recursive": True} or a.get("recursive")
               for a in fake.args("/2/files/list_folder"))
    assert {rel for rel, _st in remote.walk("sub")} == {"b.csv", "deeper/c.json"}  # case-insensitive
    assert list(remote.walk("missing")) == []
    # a cursor Dropbox resets: the listing starts again and still gives every file once
    fake.inject("/2/files/list_folder/continue", "status", status=409, times=1,
                body={"error_summary": "reset/..", "error": {".tag": "reset"}})
    assert sorted(rel for rel, _st in remote.walk("")) == sorted(names)
