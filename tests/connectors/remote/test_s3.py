"""S3 (boto3) against moto's S3 server on loopback, through an HTTPS proxy that can drop a
connection mid-upload."""
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


def big(n: int) -> bytes:
    return os.urandom(n)


def connected(url, opts):
    remote = create_remote(url, opts)
    remote.connect()
    return remote


def test_export_rerun_and_change(s3_server):
    opts = s3_server.options()
    run(create_sink(s3_server.url("nightly/out"), opts), make_records(), ctx(("json", "csv")))
    objs = s3_server.objects("nightly/out/")
    assert sum("/media/" in k for k in objs) == 3 and any(k.endswith(".csv") for k in objs)
    assert json.loads(objs[f"nightly/out/{STATE_FILE}"])["cursors"] == {"101": "2024-05-03 10:00:00"}
    assert not any(".partial" in k for k in objs)  # written under their final names: S3 shows whole objects only
    # every object carries its sha256, which the next run compares: nothing is sent again
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=next(k for k in objs if "/media/" in k))
    assert head["Metadata"]["sha256"] == hashlib.sha256(objs[next(k for k in objs if "/media/" in k)]).hexdigest()
    sink = create_sink(s3_server.url("nightly/out"), opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert sink.stats.uploaded == 0 and sink.stats.skipped > 0
    sink = create_sink(s3_server.url("nightly/out"), opts)
    run(sink, make_records(version=2), ctx(("json", "csv")))
    assert 0 < sink.stats.uploaded and not any("/media/" in p for p in sink.stats.uploaded_paths)
    assert b"comment 1 v2" in b"".join(s3_server.objects("nightly/out/").values())


def test_remote_operations_and_listing(s3_server, tmp_path):
    remote = connected(s3_server.url("a/b"), s3_server.options())
    try:
        remote.mkdir("c/d")  # no folders in S3: nothing to do
        remote.put("x.txt", io.BytesIO(b"hello"), 5)
        assert remote.stat("x.txt").size == 5
        assert remote.stat("x.txt").checksum == hashlib.sha256(b"hello").hexdigest()
        assert remote.stat("missing.txt") is None
        buf = io.BytesIO()
        assert remote.get("x.txt", buf) and buf.getvalue() == b"hello"
        assert remote.get("missing.txt", io.BytesIO()) is False
        remote.put("c/d/y.txt", io.BytesIO(b"1"), 1)
        assert sorted(remote.listdir("")) == [("x.txt", remote.stat("x.txt").__class__(5))]
        assert [n for n, _ in remote.listdir("c/d")] == ["y.txt"] and list(remote.listdir("nope")) == []
        remote.rename("c/d/y.txt", "x.txt")  # server-side copy + delete
        assert remote.stat("x.txt").size == 1 and remote.stat("c/d/y.txt") is None
        assert remote.stat("x.txt").checksum == hashlib.sha256(b"1").hexdigest()
        remote.delete("x.txt")
        remote.delete("x.txt")
        with pytest.raises(SinkError, match=r"may not contain '\.' or '\.\.'"):
            remote.put("../evil", io.BytesIO(b""), 0)
    finally:
        remote.close()
    assert set(s3_server.objects()) == set()


def test_multipart_upload_is_streamed_checked_and_whole(s3_server, tmp_path):
    data = big(13 * MiB + 123)
    remote = connected(s3_server.url("big"), s3_server.options(simple_upload_limit="5MiB", chunk_size="5MiB"))
    try:
        upload_file(remote, tmp_path, "archive.bin", data)
        st = remote.stat("archive.bin")
        assert st.size == len(data) and st.checksum == hashlib.sha256(data).hexdigest()
        buf = io.BytesIO()
        remote.get("archive.bin", buf)
        assert buf.getvalue() == data
    finally:
        remote.close()
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key="big/archive.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts


def test_a_connection_dropped_mid_part_is_retried(s3_server, tmp_path):
    data = big(11 * MiB)
    s3_server.proxy.drop_after(2 * MiB, times=1)  # the connection carrying the first part is cut
    remote = connected(s3_server.url("big"), s3_server.options(simple_upload_limit="5MiB", chunk_size="5MiB",
                                                             upload_concurrency=1))
    try:
        upload_file(remote, tmp_path, "f.bin", data)
    finally:
        remote.close()
    assert s3_server.proxy.dropped == 1
    assert s3_server.objects("big/") == {"big/f.bin": data}
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads")


def test_an_upload_that_keeps_failing_leaves_nothing(s3_server, tmp_path):
    s3_server.proxy.drop_after(1 * MiB, times=100)
    remote = connected(s3_server.url("big"), s3_server.options(simple_upload_limit="5MiB", chunk_size="5MiB"))
    try:
        with pytest.raises(TransientSinkError, match="connection to S3 lost"):
            upload_file(remote, tmp_path, "f.bin", big(12 * MiB))
        with pytest.raises(TransientSinkError):
            upload_file(remote, tmp_path, "small.bin", big(2 * MiB))
    finally:
        remote.close()
    s3_server.proxy.drop_after(0, times=0)
    assert s3_server.objects() == {}
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads")


def test_a_failed_export_publishes_no_state(s3_server):
    s3_server.proxy.drop_after(10_000, times=1000)
    with pytest.raises(TransientSinkError):
        run(create_sink(s3_server.url(), s3_server.options()), make_records(media_bytes=b"x" * 20_000))
    s3_server.proxy.drop_after(0, times=0)
    assert not any(k.endswith(STATE_FILE) for k in s3_server.objects())


def test_tls_is_verified(s3_server, tmp_path):
    from tests.connectors.remote.fake_http import make_tls_files

    other_ca, _, _ = make_tls_files(tmp_path / "other")
    with pytest.raises(SinkError, match="TLS verification of the S3 server failed") as e:
        connected(s3_server.url(), s3_server.options(ca_bundle=str(other_ca)))
    assert not isinstance(e.value, TransientSinkError)


def test_refusals_are_one_clear_line(s3_server, monkeypatch):
    with pytest.raises(SinkError, match="bucket 'no-such-bucket' does not exist"):
        connected("s3://no-such-bucket/x", s3_server.options())
    with pytest.raises(ConfigError, match="never as a value|secrets come from"):
        create_remote(s3_server.url(), {**s3_server.options(), "secret_access_key": "hunter22"})
    with pytest.raises(ConfigError, match="carries no credentials"):
        create_remote(f"s3://AKIA:hunter22@{s3_server.bucket}/x", s3_server.options())
    monkeypatch.delenv("S3_TEST_SECRET")
    with pytest.raises(ConfigError, match="S3_TEST_SECRET"):
        create_remote(s3_server.url(), s3_server.options())
    with pytest.raises(ConfigError, match="both the access key id and the secret"):
        create_remote(s3_server.url(), {k: v for k, v in s3_server.options().items() if k != "secret_access_key_env"})
    with pytest.raises(ConfigError, match="endpoint_url must be an http"):
        create_remote(s3_server.url(), s3_server.options(endpoint_url="ftp://x"))
    with pytest.raises(ConfigError, match="without a bucket"):
        create_remote("s3:///x", s3_server.options())


def test_secrets_never_reach_messages(s3_server, monkeypatch):
    monkeypatch.setenv("S3_TEST_SECRET", "a-very-secret-value-1234")
    remote = connected(s3_server.url(), s3_server.options())
    remote.close()
    assert "a-very-secret-value-1234" not in repr(remote) + remote.name
    from exporter.secrets import mask

    assert mask("boom a-very-secret-value-1234") == "boom ***"
