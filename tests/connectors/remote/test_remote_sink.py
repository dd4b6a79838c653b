"""The generic remote sink: staging through the files sink, planning, skipping, atomic uploads,
chunked uploads, state. Run against a real FTP server and against ``DirRemote``, a small remote
over a local folder that implements the interface (with or without rename/checksum/sessions) and
logs every call."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from exporter.connectors.files import FilesSink
from exporter.connectors.remote import create_remote, create_sink
from exporter.connectors.remote.base import ChunkedRemote, ReadableRemote, Remote, RemoteStat
from exporter.connectors.remote.sink import MANIFEST_FILE, STATE_FILE, RemoteSink

from exporter.capabilities import Capabilities
from exporter.errors import ConfigError, SinkError, TransientSinkError

from .conftest import FAST, ctx, make_records, run, tree


class DirRemote:
    """A remote over a local folder, with switchable abilities, logging every call."""

    def __init__(self, root: Path, caps: Capabilities, *, fail_put: str | None = None):
        self.base = root
        self.root = "/remote/base"
        self.capabilities = caps
        self.name = f"dir://{root.name}"
        self.calls: list[tuple[str, str]] = []
        self.fail_put = fail_put
        self.connected = 0

    def _p(self, path: str) -> Path:
        return self.base / path

    def connect(self) -> None:
        self.connected += 1
        self.base.mkdir(parents=True, exist_ok=True)

    def stat(self, path):
        self.calls.append(("stat", path))
        p = self._p(path)
        if not p.is_file():
            return None
        checksum = None
        if self.capabilities.checksum == "sha256":
            checksum = hashlib.sha256(p.read_bytes()).hexdigest()
        return RemoteStat(p.stat().st_size, checksum)

    def put(self, path, data, size):
        self.calls.append(("put", path))
        if self.fail_put and self.fail_put in path:
            raise TransientSinkError(f"{path}: connection reset")
        with open(self._p(path), "wb") as fh:
            shutil.copyfileobj(data, fh)

    def mkdir(self, path):
        self.calls.append(("mkdir", path))
        self._p(path).mkdir(parents=True, exist_ok=True)

    def rename(self, src, dst):
        self.calls.append(("rename", f"{src} -> {dst}"))
        self._p(src).replace(self._p(dst))

    def delete(self, path):
        self.calls.append(("delete", path))
        self._p(path).unlink(missing_ok=True)

    def get(self, path, dest):
        p = self._p(path)
        if not p.is_file():
            return False
        dest.write(p.read_bytes())
        return True

    def close(self) -> None:
        pass

    def ops(self, kind: str) -> list[str]:
        return [p for k, p in self.calls if k == kind]


class ChunkedDirRemote(DirRemote):
    def put_chunked(self, path, data, size, chunk_size):
        self.calls.append(("put_chunked", f"{path} {chunk_size}"))
        with open(self._p(path), "wb") as fh:
            while chunk := data.read(chunk_size):
                assert len(chunk) <= chunk_size
                fh.write(chunk)


def local_export(tmp_path: Path, records, formats=("json", "csv")) -> dict[str, bytes]:
    """What the files sink writes for the same records, for comparison."""
    root = tmp_path / "local-export"
    run(FilesSink(root, {}), records, ctx(formats))
    return {k: v for k, v in tree(root).items() if not k.startswith(".exporter")}  # its state and store


def remote_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(root).items() if not Path(k).name.startswith(".exporter-")}


def test_interface_protocols():
    caps = Capabilities()
    assert isinstance(DirRemote(Path("x"), caps), Remote)
    assert isinstance(DirRemote(Path("x"), caps), ReadableRemote)
    assert not isinstance(DirRemote(Path("x"), caps), ChunkedRemote)
    assert isinstance(ChunkedDirRemote(Path("x"), caps), ChunkedRemote)


def test_ftp_upload_rerun_and_change(ftp_server, password_env, tmp_path):
    records = make_records()
    opts = {"password_env": password_env, **FAST}
    run(create_sink(ftp_server.url("nightly"), opts), records, ctx(("json", "csv")))
    remote_root = ftp_server.root / "nightly"
    expected = local_export(tmp_path, records)
    assert any(k.endswith(".csv") for k in expected) and any(k.endswith(".jsonl") for k in expected)
    assert sum("/media/" in k for k in expected) == 3
    assert remote_files(remote_root) == expected  # every format and media, byte for byte
    assert not [p for p in remote_root.rglob("*") if ".partial" in p.name]
    first = ftp_server.hooks.stored_data()
    assert len(first) == len(expected)
    manifest = json.loads((remote_root / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == set(expected)
    state = json.loads((remote_root / STATE_FILE).read_text())
    assert state["cursors"] == {"101": "2024-05-03 10:00:00"}

    # a nightly re-run of the same data sends nothing at all
    ftp_server.hooks.stored.clear()
    sink = create_sink(ftp_server.url("nightly"), opts)
    run(sink, make_records(), ctx(("json", "csv")))
    assert ftp_server.hooks.stored == []
    assert sink.stats.uploaded == 0 and sink.stats.skipped == len(expected)

    # one comment changed: only the files holding it are sent again, never the media
    ftp_server.hooks.stored.clear()
    changed = make_records(version=2)
    sink = create_sink(ftp_server.url("nightly"), opts)
    run(sink, changed, ctx(("json", "csv")))
    sent = ftp_server.hooks.stored_data()
    assert sent and not any("/media/" in p for p in sent)
    assert all(".partial" in p for p in sent)
    assert remote_files(remote_root) == local_export(tmp_path / "2", changed)
    assert b"comment 1 v2" in b"".join(remote_files(remote_root).values())


def test_state_stored_remotely_and_not_advanced_by_a_failed_run(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    sink = RemoteSink(remote, FAST)
    assert sink.load_state() == {}
    run(sink, make_records())
    assert RemoteSink(remote, FAST).load_state() == {"101": "2024-05-03 10:00:00"}

    # a failed run: its checkpoint was committed but the run did not close ok
    records = make_records(n_subs=4)
    sink = RemoteSink(remote, FAST)
    sink.open(ctx())
    sink.write(records)
    sink.commit()
    sink.close(False)
    assert RemoteSink(remote, FAST).load_state() == {"101": "2024-05-03 10:00:00"}
    assert sink.staging is None


def test_failed_run_uploads_no_aggregate_and_removes_staging(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    sink = RemoteSink(remote, FAST)
    sink.open(ctx())
    staging = sink.staging
    records = make_records()
    sink.write(records[:4])  # account, form, submission 1, its media
    sink.commit()
    sink.write(records[4:6])
    sink.close(False)
    uploaded = remote_files(tmp_path / "r")
    # files committed before the failure are there (complete); no aggregate file was sent
    assert any("/media/1001/" in k for k in uploaded), uploaded
    assert not any(k.endswith((".csv", ".jsonl")) for k in uploaded)
    assert not staging.exists()
    assert not (tmp_path / "r" / STATE_FILE).exists()


def test_checksum_remote_skips_identical_and_resends_changed(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    run(RemoteSink(remote, FAST), make_records())
    n = len(remote.ops("put"))
    assert n and all(p.endswith(".partial") for p in remote.ops("put"))
    assert len(remote.ops("rename")) == n
    assert not (tmp_path / "r" / MANIFEST_FILE).exists()  # the remote checksums content itself
    remote.calls.clear()
    run(RemoteSink(remote, FAST), make_records())
    assert remote.ops("put") == []
    # same size, different bytes: the checksum sees it
    photo = next((tmp_path / "r").rglob("photo-2.jpg"))
    photo.write_bytes(b"X" * photo.stat().st_size)
    remote.calls.clear()
    run(RemoteSink(remote, FAST), make_records())
    assert [p for p in remote.ops("put") if "photo-2.jpg" in p] and len(remote.ops("put")) == 1


def test_manifest_catches_same_size_changes_on_remotes_without_checksum(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum=None))
    run(RemoteSink(remote, FAST), make_records(media_bytes=b"A" * 3000))
    remote.calls.clear()
    run(RemoteSink(remote, FAST), make_records(media_bytes=b"B" * 3000))  # same sizes, new bytes
    sent = [p for p in remote.ops("put") if "/media/" in p]
    assert len(sent) == 3
    assert all(p.read_bytes() == b"B" * 3000 for p in (tmp_path / "r").rglob("photo-*.jpg"))


def test_remote_without_rename_gets_direct_puts(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(rename=False, checksum="sha256"))
    run(RemoteSink(remote, FAST), make_records())
    assert remote.ops("rename") == []
    assert remote.ops("put") and not any(".partial" in p for p in remote.ops("put"))
    assert remote_files(tmp_path / "r")


def test_large_files_use_upload_sessions(tmp_path):
    caps = Capabilities(checksum="sha256", max_simple_upload=5000)
    remote = ChunkedDirRemote(tmp_path / "r", caps)
    run(RemoteSink(remote, {**FAST, "chunk_size": 1024}), make_records())
    chunked = remote.ops("put_chunked")
    # photo-3 is 6006 bytes: above the limit, sent in 1 KiB chunks to a .partial then renamed
    assert any("photo-3.jpg" in p and p.endswith(".partial 1024") for p in chunked)
    assert not any("photo-1.jpg" in p for p in chunked)
    assert next((tmp_path / "r").rglob("photo-3.jpg")).stat().st_size == 6006

    plain = DirRemote(tmp_path / "p", caps)
    with pytest.raises(SinkError, match="no upload sessions"):
        run(RemoteSink(plain, FAST), make_records())


def test_transient_failures_are_retried_then_reported(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"), fail_put="photo-2")
    with pytest.raises(TransientSinkError, match="connection reset"):
        run(RemoteSink(remote, FAST), make_records())
    attempts = [p for p in remote.ops("put") if "photo-2" in p]
    assert len(attempts) == FAST["retries"] + 1
    assert not (tmp_path / "r" / STATE_FILE).exists()
    assert not [p for p in (tmp_path / "r").rglob("*.partial")]
    assert not list((tmp_path / "r").rglob("photo-2.jpg"))


def test_path_too_long_fails_before_any_upload(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256", max_path_length=70))
    with pytest.raises(SinkError, match=r"path too long .*limit is 70"):
        run(RemoteSink(remote, FAST), make_records(form_name="A rather long form name " * 2), batch=100)
    assert remote.ops("put") == []


def test_forbidden_characters_are_renamed_deterministically(tmp_path):
    caps = Capabilities(checksum="sha256", forbidden_chars="#%&")
    remote = DirRemote(tmp_path / "r", caps)
    sink = RemoteSink(remote, FAST)
    run(sink, make_records(form_name="Sécurité #1 & 100%"))
    names = [p.name for p in (tmp_path / "r").rglob("*")]
    assert names and not any(c in n for n in names for c in "#%&")
    assert sink.remote_path("forms/101-Sécurité #1 & 100%/form.json") == \
        RemoteSink(remote, FAST).remote_path("forms/101-Sécurité #1 & 100%/form.json")
    remote.calls.clear()
    run(RemoteSink(remote, FAST), make_records(form_name="Sécurité #1 & 100%"))
    assert remote.ops("put") == []  # same remote names on the next run


def test_case_insensitive_collision_is_refused(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256", case_insensitive=True))
    sink = RemoteSink(remote, FAST)
    sink._check_path("forms/a/Photo.jpg", "forms/a/Photo.jpg")
    with pytest.raises(SinkError, match="both be stored"):
        sink._check_path("forms/a/photo.JPG", "forms/a/photo.JPG")


def test_long_names_get_a_short_partial_name(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    sink = RemoteSink(remote, FAST)
    tmp = sink.transfer.partial_name("d/" + "x" * 250 + ".jpg", "abc")
    assert tmp.startswith("d/") and tmp.endswith(".partial") and len(tmp.split("/")[1]) < 60


def test_reserved_names_never_come_from_staging(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    sink = RemoteSink(remote, FAST)
    assert sink._plan([STATE_FILE, MANIFEST_FILE, "a/b.json"]) == [("a/b.json", "a/b.json")]


def test_create_sink_dispatch_and_config_errors(tmp_path):
    assert type(create_remote("ftp://u@h/x", {})).__name__ == "FtpRemote"
    assert create_remote("ftps://u@h:2121/x", {}).tls
    assert type(create_remote("sftp://u@h/x", {})).__name__ == "SftpRemote"
    with pytest.raises(ConfigError, match="not a remote URL"):
        create_remote("gopher://h/x", {})
    with pytest.raises(ConfigError, match="not in the URL"):
        create_sink("ftp://u:hunter2@h/x", {})
    with pytest.raises(ConfigError, match="never as a value"):
        create_sink("sftp://u@h/x", {"password": "hunter2"})
    with pytest.raises(ConfigError, match=r"NOPE_NOT_SET .*is not set"):
        create_sink("ftp://u@h/x", {"password_env": "NOPE_NOT_SET"})
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    r = create_remote("ftp://u@h/x", {"password_file": str(secret)})
    assert r._password == "from-file" and "from-file" not in repr(r) and "from-file" not in r.name
    sink = create_sink("ftp://u@h:2121/x", {"password_file": str(secret)})
    assert "from-file" not in repr(sink) and sink.name == "ftp://u@h:2121/x"


def test_registry_routes_remote_schemes():
    from exporter.registry import create_sink as registry_create

    sink = registry_create("sftp://bob@example.org:2222/srv/out", {})
    assert isinstance(sink, RemoteSink) and sink.name == "sftp://bob@example.org:2222/srv/out"


def test_unreadable_state_is_a_clear_error(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    remote.connect()
    (tmp_path / "r" / STATE_FILE).write_text("{not json")
    with pytest.raises(SinkError, match=r"\.exporter-state\.json .* not valid JSON"):
        RemoteSink(remote, FAST).load_state()


def test_remote_without_get_works_without_state(tmp_path):
    class NoGet(DirRemote):
        get = None

    remote = NoGet(tmp_path / "r", Capabilities(checksum="sha256"))
    assert not isinstance(remote, ReadableRemote)
    sink = RemoteSink(remote, FAST)
    run(sink, make_records())
    assert remote_files(tmp_path / "r")
    assert (tmp_path / "r" / STATE_FILE).exists()  # written, but it cannot be read back
    assert RemoteSink(remote, FAST).load_state() == {}


def test_media_bytes_streamed_not_loaded(tmp_path):
    """A media file much larger than the upload block goes through intact."""
    big = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"))
    run(RemoteSink(remote, FAST), make_records(media_bytes=big, n_subs=1))
    (photo,) = (tmp_path / "r").rglob("photo-1.jpg")
    assert photo.read_bytes() == big


def test_every_available_format_is_uploaded(sftp_server, password_env, tmp_path):
    """Whatever formats this build has (json, csv, xlsx, ...) land on the remote as the files sink
    writes them locally."""
    from exporter.formats.base import known_formats

    formats = tuple(known_formats())
    assert {"json", "csv"} <= set(formats)
    records = make_records()
    opts = {"password_env": password_env, "known_hosts": str(sftp_server.known_hosts), **FAST}
    run(create_sink(sftp_server.url("/all"), opts), records, ctx(formats))
    expected = local_export(tmp_path, records, formats)
    uploaded = remote_files(sftp_server.root / "all")
    assert set(uploaded) == set(expected)
    assert all(uploaded[k] for k in uploaded)


def test_remote_that_retries_itself_is_not_retried_again(tmp_path):
    remote = DirRemote(tmp_path / "r", Capabilities(checksum="sha256"), fail_put="photo-2")
    remote.retries_itself = True
    with pytest.raises(TransientSinkError):
        run(RemoteSink(remote, FAST), make_records())
    assert len([p for p in remote.ops("put") if "photo-2" in p]) == 1
