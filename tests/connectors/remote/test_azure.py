"""Azure Blob Storage (azure-storage-blob) against Azurite (npm) on loopback, through an HTTPS
proxy that can drop a connection mid-upload."""
from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from exporter.connectors.remote import create_remote, create_sink
from exporter.connectors.remote.sink import STATE_FILE

from exporter.errors import ConfigError, SinkError, TransientSinkError

from .conftest import ctx, make_records, run, upload_file

MiB = 1024 * 1024


def connected(url, opts):
    remote = create_remote(url, opts)
    remote.connect()
    return remote


def test_export_rerun_and_change(azurite):
    opts = azurite.options()
    run(create_sink(azurite.url("nightly/out"), opts), make_records(), ctx(("json", "csv")))
    blobs = azurite.blobs("nightly/out/")
    assert sum("/media/" in k for k in blobs) == 3 and any(k.endswith(".csv") for k in blobs)
    assert json.loads(blobs[f"nightly/out/{STATE_FILE}"])["cursors"] == {"101": "2024-05-03 10:00:00"}
    assert not any(".partial" in k for k in blobs)
    photo = next(k for k in blobs if "/media/" in k)
    props = azurite.service().get_blob_client(azurite.container, photo).get_blob_properties()
    assert props.metadata["sha256"] == hashlib.sha256(blobs[photo]).hexdigest()
    sink = create_sink(azurite.url("nightly/out"), opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert sink.stats.uploaded == 0 and sink.stats.skipped > 0
    sink = create_sink(azurite.url("nightly/out"), opts)
    run(sink, make_records(version=2), ctx(("json", "csv")))
    assert 0 < sink.stats.uploaded and not any("/media/" in p for p in sink.stats.uploaded_paths)
    assert b"comment 1 v2" in b"".join(azurite.blobs("nightly/out/").values())


def test_remote_operations_and_listing(azurite):
    remote = connected(azurite.url("a/b"), azurite.options())
    try:
        remote.mkdir("c/d")
        remote.put("x.txt", io.BytesIO(b"hello"), 5)
        st = remote.stat("x.txt")
        assert st.size == 5 and st.checksum == hashlib.sha256(b"hello").hexdigest()
        assert remote.stat("missing.txt") is None
        buf = io.BytesIO()
        assert remote.get("x.txt", buf) and buf.getvalue() == b"hello"
        assert remote.get("missing.txt", io.BytesIO()) is False
        remote.put("c/d/y.txt", io.BytesIO(b"1"), 1)
        assert [(n, s.size) for n, s in remote.listdir("")] == [("x.txt", 5)]
        assert [n for n, _ in remote.listdir("c/d")] == ["y.txt"] and list(remote.listdir("nope")) == []
        remote.rename("c/d/y.txt", "x.txt")  # server-side copy + delete
        assert remote.stat("x.txt").size == 1 and remote.stat("c/d/y.txt") is None
        remote.delete("x.txt")
        remote.delete("x.txt")
    finally:
        remote.close()
    assert azurite.blobs() == {}


def test_block_upload_is_streamed_checked_and_whole(azurite, tmp_path):
    data = os.urandom(13 * MiB + 123)
    remote = connected(azurite.url("big"), azurite.options(simple_upload_limit="4MiB", chunk_size="4MiB"))
    try:
        upload_file(remote, tmp_path, "archive.bin", data)
        st = remote.stat("archive.bin")
        assert st.size == len(data) and st.checksum == hashlib.sha256(data).hexdigest()
        buf = io.BytesIO()
        remote.get("archive.bin", buf)
        assert buf.getvalue() == data
    finally:
        remote.close()
    blocks = azurite.service().get_blob_client(azurite.container, "big/archive.bin").get_block_list("committed")[0]
    assert len(blocks) == 4


def test_a_connection_dropped_mid_block_is_retried(azurite, tmp_path):
    data = os.urandom(9 * MiB)
    azurite.proxy.drop_after(2 * MiB, times=1)
    remote = connected(azurite.url("big"), azurite.options(simple_upload_limit="4MiB", chunk_size="4MiB",
                                                           upload_concurrency=1))
    try:
        upload_file(remote, tmp_path, "f.bin", data)
    finally:
        remote.close()
    assert azurite.proxy.dropped == 1
    assert azurite.blobs("big/") == {"big/f.bin": data}


def test_an_upload_that_keeps_failing_leaves_nothing(azurite, tmp_path):
    azurite.proxy.drop_after(1 * MiB, times=100)
    remote = connected(azurite.url("big"), azurite.options(simple_upload_limit="4MiB", chunk_size="4MiB"))
    try:
        with pytest.raises(TransientSinkError, match="connection to Azure lost"):
            upload_file(remote, tmp_path, "f.bin", os.urandom(9 * MiB))
        with pytest.raises(TransientSinkError):
            upload_file(remote, tmp_path, "small.bin", os.urandom(2 * MiB))
    finally:
        remote.close()
    azurite.proxy.drop_after(0, times=0)
    assert azurite.blobs() == {}  # staged blocks are never visible


def test_connection_string_from_a_file(azurite, tmp_path):
    cs = tmp_path / "azure.conn"
    cs.write_text(azurite.connection_string + "\n")
    remote = connected(azurite.url("cs"), {"connection_string_file": str(cs), "retries": 1})
    try:
        remote.put("x.txt", io.BytesIO(b"hi"), 2)
    finally:
        remote.close()
    assert azurite.blobs() == {"cs/x.txt": b"hi"}


def test_tls_is_verified(azurite, tmp_path):
    from tests.connectors.remote.fake_http import make_tls_files

    other_ca, _, _ = make_tls_files(tmp_path / "other")
    with pytest.raises(SinkError, match="TLS verification of the Azure server failed") as e:
        connected(azurite.url(), azurite.options(ca_bundle=str(other_ca)))
    assert not isinstance(e.value, TransientSinkError)


def test_refusals_are_one_clear_line(azurite, monkeypatch):
    with pytest.raises(SinkError, match="container 'nocontainer' does not exist"):
        connected("azure://devstoreaccount1/nocontainer/x", azurite.options())
    monkeypatch.setenv("BAD_KEY", "d3Jvbmc=")
    with pytest.raises(SinkError, match="Azure refused the credentials") as e:
        connected(azurite.url(), azurite.options(account_key_env="BAD_KEY"))
    assert not isinstance(e.value, TransientSinkError) and "d3Jvbmc=" not in str(e.value)
    with pytest.raises(ConfigError, match="secrets come from"):
        create_remote(azurite.url(), {**azurite.options(), "account_key": "x"})
    with pytest.raises(ConfigError, match="exactly one of"):
        create_remote(azurite.url(), {**azurite.options(), "sas_token_env": "AZURE_TEST_KEY"})
    with pytest.raises(ConfigError, match="account and a container"):
        create_remote("azure://acct", azurite.options())
    with pytest.raises(ConfigError, match="carries no credentials"):
        create_remote("azure://acct/c/x?sig=abc", azurite.options())
