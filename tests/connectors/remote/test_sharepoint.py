"""The SharePoint remote through the real office365-rest-python-client against a loopback fake."""
from __future__ import annotations

import os
import time

import pytest
from exporter.connectors.remote.base import ChunkedRemote, Remote
from exporter.connectors.remote.sharepoint_remote import (
    CHUNK_UNIT,
    SharePointRemote,
    create_remote,
)

from exporter.errors import ConfigError, SinkError, TransientSinkError

from .conftest import serve_fake, upload_file
from .fake_sharepoint import FakeSharePoint

pytestmark = pytest.mark.network

LIB = "/sites/Team/Shared Documents"


@pytest.fixture()
def fake(tls):
    yield from serve_fake(FakeSharePoint, tls)


def make_remote(fake, tls, monkeypatch, folder="exports", token="sp-token", **options) -> SharePointRemote:
    monkeypatch.setenv("TEST_SP_TOKEN", token)
    opts = {"token_env": "TEST_SP_TOKEN", "ca_bundle": str(tls[0]), "simple_upload_limit": 64 * 1024,
            "chunk_size": CHUNK_UNIT, "retry_max_delay": 5}
    opts.update(options)
    remote = create_remote(f"sharepoint://{fake.host}/sites/Team/Shared%20Documents/{folder}", opts)
    remote.connect()
    return remote


@pytest.fixture()
def remote(fake, tls, monkeypatch):
    fake.folders[f"{LIB}/exports".lower()] = f"{LIB}/exports"
    r = make_remote(fake, tls, monkeypatch)
    yield r
    r.close()


def test_url_parsing_and_capabilities(remote):
    assert isinstance(remote, Remote) and isinstance(remote, ChunkedRemote)
    assert remote.root_path == f"{LIB}/exports"
    assert remote.site_url.endswith("/sites/Team") and remote.site_url.startswith("https://")
    caps = remote.capabilities
    assert caps.checksum is None and caps.case_insensitive
    assert caps.max_path_length == 400 - len(f"{LIB}/exports") - 1
    for c in '"*:<>?\\|':
        assert c in caps.forbidden_chars
    r = create_remote("sharepoint://contoso.sharepoint.com/Docs/a/b", {"token_env": "TEST_SP_TOKEN"})
    assert r.site_url == "https://contoso.sharepoint.com" and r.root_path == "/Docs/a/b"
    r = create_remote("sharepoint://contoso.sharepoint.com/sites/a/sub/Lib", {"token_env": "TEST_SP_TOKEN",
                                                                              "site_path": "/sites/a/sub"})
    assert r.site_url == "https://contoso.sharepoint.com/sites/a/sub" and r.root_path == "/sites/a/sub/Lib"
    with pytest.raises(ConfigError, match="names the site and the document library"):
        create_remote("sharepoint://contoso.sharepoint.com/sites/Team", {"token_env": "TEST_SP_TOKEN"})


def test_small_upload_stat_and_skip_identical(remote, fake, tmp_path):
    data = b"hello sharepoint\n" * 50
    remote.mkdir("a/b")
    upload_file(remote, tmp_path, "a/b/hello.txt", data)
    assert fake.read(f"{LIB}/exports/a/b/hello.txt") == data
    st = remote.stat("a/b/hello.txt")
    assert st is not None and st.size == len(data) and st.checksum is None  # size-only skip
    assert remote.stat("A/B/HELLO.TXT") == st  # case-insensitive like the service
    assert remote.stat("a/b/missing.txt") is None


def test_upload_creates_missing_folders_and_overwrites(remote, fake, tmp_path):
    upload_file(remote, tmp_path, "new/deep/it's #1 100%.txt", b"first")
    upload_file(remote, tmp_path, "new/deep/it's #1 100%.txt", b"second")
    assert fake.read(f"{LIB}/exports/new/deep/it's #1 100%.txt") == b"second"
    assert f"{LIB}/exports/new/deep".lower() in fake.folders


def test_chunked_upload_in_320k_multiples(remote, fake, tmp_path):
    data = os.urandom(4 * CHUNK_UNIT + 1234)
    upload_file(remote, tmp_path, "big/blob.bin", data, chunk=CHUNK_UNIT + 1000)  # rounded down to 320 KiB
    assert fake.read(f"{LIB}/exports/big/blob.bin") == data
    assert len(fake.calls("startUpload")) == 1
    assert len(fake.calls("continueUpload")) == 3
    assert len(fake.calls("finishUpload")) == 1
    sizes = [len(r.body) for r in fake.calls("Upload(")]
    assert all(s % CHUNK_UNIT == 0 for s in sizes[:-1]) and sizes[-1] == 1234
    assert remote.stat("big/blob.bin").size == len(data)


def test_put_switches_to_session_above_simple_limit(remote, fake, tmp_path):
    data = os.urandom(2 * CHUNK_UNIT + 5)
    upload_file(remote, tmp_path, "auto.bin", data)
    assert fake.read(f"{LIB}/exports/auto.bin") == data
    assert len(fake.calls("startUpload")) == 1 and len(fake.calls("finishUpload")) == 1


def test_rename_replaces_destination(remote, fake, tmp_path):
    upload_file(remote, tmp_path, "out/report.csv.abc123.partial", b"new data")
    upload_file(remote, tmp_path, "out/report.csv", b"old data")
    remote.rename("out/report.csv.abc123.partial", "out/report.csv")
    assert fake.read(f"{LIB}/exports/out/report.csv") == b"new data"
    assert remote.stat("out/report.csv.abc123.partial") is None
    assert len(fake.calls("MoveFileByPath")) == 1
    with pytest.raises(SinkError, match="does not exist"):
        remote.rename("out/nothing", "out/else")


def test_mkdir_and_delete_are_idempotent(remote, fake, tmp_path):
    remote.mkdir("x/y")
    remote.mkdir("x/y")
    assert f"{LIB}/exports/x/y".lower() in fake.folders
    upload_file(remote, tmp_path, "x/y/z.txt", b"z")
    remote.delete("x/y/z.txt")
    remote.delete("x/y/z.txt")
    assert remote.stat("x/y/z.txt") is None


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_retried_honouring_retry_after(remote, fake, tmp_path, status):
    fake.throttle("Files/add", status=status, retry_after=1)
    started = time.monotonic()
    upload_file(remote, tmp_path, "throttled.txt", b"patience")
    assert time.monotonic() - started >= 1.0
    assert [r.fault for r in fake.calls("Files/add")] == ["status", None]
    assert fake.read(f"{LIB}/exports/throttled.txt") == b"patience"


def test_throttling_exhausted_is_transient(fake, tls, monkeypatch):
    fake.folders[f"{LIB}/exports".lower()] = f"{LIB}/exports"
    remote = make_remote(fake, tls, monkeypatch, attempts=1)
    fake.throttle("getFileByServerRelativePath", retry_after=7)
    with pytest.raises(TransientSinkError) as ei:
        remote.stat("x.txt")
    assert ei.value.retry_after == 7 and "429" in str(ei.value)


@pytest.mark.parametrize("kind", ["drop_before", "drop_after"])
def test_dropped_connection_mid_chunk_resumes(remote, fake, tmp_path, kind):
    data = os.urandom(5 * CHUNK_UNIT + 77)
    fake.inject("continueUpload", kind, skip=1)  # the 2nd ContinueUpload loses its connection
    upload_file(remote, tmp_path, "resumed.bin", data, chunk=CHUNK_UNIT)
    assert fake.read(f"{LIB}/exports/resumed.bin") == data
    assert len(fake.calls("GetUploadStatus")) == 1  # asked the server where the session stood
    offsets = [r.route for r in fake.calls("continueUpload")]
    if kind == "drop_before":
        assert len(offsets) == 4 + 1  # the lost chunk was sent again
    else:
        assert len(offsets) == 4  # the server had it: the upload went on from its offset


def test_dropped_connection_on_start_and_finish(remote, fake, tmp_path):
    data = os.urandom(2 * CHUNK_UNIT + 10)
    fake.inject("startUpload", "drop_before")
    fake.inject("finishUpload", "drop_after")
    upload_file(remote, tmp_path, "edges.bin", data, chunk=CHUNK_UNIT)
    assert fake.read(f"{LIB}/exports/edges.bin") == data


def test_wrong_token_is_a_clear_error(fake, tls, monkeypatch):
    with pytest.raises(SinkError, match="SharePoint refused the token") as ei:
        make_remote(fake, tls, monkeypatch, token="bad-token")
    assert not isinstance(ei.value, TransientSinkError) and "bad-token" not in str(ei.value)


def test_missing_library_is_a_clear_error(fake, tls, monkeypatch):
    monkeypatch.setenv("TEST_SP_TOKEN", "sp-token")
    remote = create_remote(f"sharepoint://{fake.host}/sites/Team/NoSuchLib/x",
                           {"token_env": "TEST_SP_TOKEN", "ca_bundle": str(tls[0])})
    with pytest.raises(SinkError, match="document library not found"):
        remote.connect()


def test_quota_is_a_clear_error(remote, fake, tmp_path):
    fake.quota = 1000
    with pytest.raises(SinkError, match="out of storage") as ei:
        upload_file(remote, tmp_path, "q.bin", b"x" * 2000)
    assert "q.bin" in str(ei.value) and not isinstance(ei.value, TransientSinkError)
    with pytest.raises(SinkError, match="out of storage"):
        upload_file(remote, tmp_path, "q2.bin", os.urandom(2 * CHUNK_UNIT), chunk=CHUNK_UNIT)


@pytest.mark.parametrize("rel, why", [
    ("d/" + "n" * 256, "longer than 255"),
    ("/".join(["d" * 60] * 6) + "/f.txt", "SharePoint allows 400"),
    ("bad:name.txt", "does not allow"),
    ('quote".txt', "does not allow"),
    ("pipe|.txt", "does not allow"),
    (" lead.txt", "starts or ends with a space"),
    ("CON.txt", "reserved"),
    (".lock", "reserved"),
    ("x_vti_y.txt", "_vti_"),
    ("~$draft.docx", "~\\$"),
    ("../escape.txt", "may not contain"),
])
def test_bad_paths_refused_before_any_upload(remote, fake, tmp_path, rel, why):
    before = len(fake.server.log)
    with pytest.raises(SinkError, match=why):
        upload_file(remote, tmp_path, rel, b"data")
    with pytest.raises(SinkError, match=why):
        upload_file(remote, tmp_path, rel, os.urandom(2 * CHUNK_UNIT), chunk=CHUNK_UNIT)
    assert len(fake.server.log) == before  # nothing reached the server


def test_plain_http_scheme_for_test_servers(monkeypatch, tmp_path):
    fake = FakeSharePoint().start()
    try:
        monkeypatch.setenv("SHAREPOINT_TOKEN", "sp-token")
        remote = create_remote(f"sharepoint+http://{fake.host}/sites/Team/Shared%20Documents", {})
        remote.connect()
        upload_file(remote, tmp_path, "plain.txt", b"over http")
        assert fake.read(f"{LIB}/plain.txt") == b"over http"
    finally:
        fake.stop()


def test_tls_is_verified(fake, monkeypatch):
    monkeypatch.setenv("TEST_SP_TOKEN", "sp-token")
    remote = create_remote(f"sharepoint://{fake.host}/sites/Team/Shared%20Documents", {"token_env": "TEST_SP_TOKEN"})
    with pytest.raises(SinkError, match="TLS verification"):
        remote.connect()


def test_secrets_only_from_env_or_files(monkeypatch, tmp_path):
    for var in ("SHAREPOINT_TOKEN", "SHAREPOINT_TENANT", "SHAREPOINT_CLIENT_ID", "SHAREPOINT_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    url = "sharepoint://contoso.sharepoint.com/sites/Team/Docs"
    with pytest.raises(ConfigError, match="no SharePoint credentials"):
        create_remote(url, {})
    with pytest.raises(ConfigError, match="secrets come from"):
        create_remote(url, {"token": "inline"})
    with pytest.raises(ConfigError, match="thumbprint"):
        create_remote(url, {"tenant": "t", "client_id": "c", "cert_path": str(tmp_path / "k.pem")})
    (tmp_path / "tok").write_text("abc\n")
    assert isinstance(create_remote(url, {"token_file": str(tmp_path / "tok")}), SharePointRemote)
    monkeypatch.setenv("SHAREPOINT_TENANT", "contoso.onmicrosoft.com")
    monkeypatch.setenv("SHAREPOINT_CLIENT_ID", "cid")
    monkeypatch.setenv("SHAREPOINT_CLIENT_SECRET", "s3cret")
    r = create_remote(url, {})
    assert "s3cret" not in repr(r)


def test_get_streams_a_file_back(remote, fake, tmp_path):
    import io

    data = os.urandom(200 * 1024)
    upload_file(remote, tmp_path, "état/données é #1.bin", data)
    assert fake.read(f"{LIB}/exports/état/données é #1.bin") == data
    buf = io.BytesIO(b"stale content")
    assert remote.get("état/données é #1.bin", buf) is True
    assert buf.getvalue() == data
    assert remote.get("état/absent.bin", io.BytesIO()) is False


def test_remote_sink_end_to_end(fake, tls, monkeypatch, tmp_path):
    """The generic RemoteSink over this remote: every file lands, a re-run sends nothing, a change
    sends only the files holding it (size-only stat + the sink's sha256 manifest)."""
    from exporter.connectors.files import FilesSink
    from exporter.connectors.remote import create_sink

    from .conftest import FAST, ctx, make_records, run, tree

    monkeypatch.setenv("TEST_SP_TOKEN", "sp-token")
    opts = {**FAST, "token_env": "TEST_SP_TOKEN", "ca_bundle": str(tls[0])}
    url = f"sharepoint://{fake.host}/sites/Team/Shared%20Documents/nightly"
    run(create_sink(url, opts), make_records(), ctx(("json", "csv")))
    run(FilesSink(tmp_path / "local", {}), make_records(), ctx(("json", "csv")))
    expected = {f"{LIB}/nightly/{k}".lower(): v for k, v in tree(tmp_path / "local").items()
                if not k.startswith(".exporter")}
    stored = {k: f.data for k, f in fake.files.items() if "/.exporter-" not in k}
    assert stored == expected and not [k for k in fake.files if ".partial" in k]

    def data_uploads():
        return [r for r in fake.calls("Files/add") if ".exporter-" not in r.route]

    before = len(data_uploads())
    sink = create_sink(url, opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert sink.stats.uploaded == 0 and sink.stats.skipped == len(expected)
    assert len(data_uploads()) == before

    sink = create_sink(url, opts)
    run(sink, make_records(version=2), ctx(("json", "csv")))
    assert 0 < sink.stats.uploaded < len(expected)
    assert not any("/media/" in p for p in sink.stats.uploaded_paths)
    assert b"comment 1 v2" in b"".join(f.data for f in fake.files.values())


def test_walk_lists_files_and_folders_recursively(remote, fake, tmp_path):
    names = ["a.txt", "Sub/b.csv", "Sub/deeper/c.json", "z/d.bin"]
    for i, rel in enumerate(names):
        upload_file(remote, tmp_path, rel, b"x" * (i + 1))
    remote.mkdir("empty/folder")
    got = {rel: st.size for rel, st in remote.walk("")}
    assert got == {rel: i + 1 for i, rel in enumerate(names)}
    assert {rel for rel, _st in remote.walk("Sub")} == {"b.csv", "deeper/c.json"}
    assert list(remote.walk("missing")) == []
    assert {c.route.rsplit("/", 1)[-1] for c in fake.server.log} >= {"Files", "Folders"}
