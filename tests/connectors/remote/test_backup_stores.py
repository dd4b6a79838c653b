"""Backups stored on remote destinations (SFTP, moto's S3, Azurite): made, pruned, verified and
restored through the remote interface."""
from __future__ import annotations

import datetime as dt

from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify as verify_archive

from exporter.backups import create_backup, load_index, restore, verify_backups
from exporter.retention import Retention
from tests.test_backups import DAY0, SAMPLE, config


def _round_trip(tmp_path, age_keys, to, options):
    from exporter.agecrypt import load_identities

    cfg = config(tmp_path, age_keys, to=to, options=options, retention=Retention(keep_last=1))
    first = create_backup(cfg, ArchiveSource(SAMPLE), now=DAY0)
    second = create_backup(cfg, ArchiveSource(SAMPLE), now=DAY0 + dt.timedelta(days=1))
    assert [e["id"] for e in load_index(cfg.state_dir, "acme")] == [second["id"]]  # the first was pruned
    [(_, problems)] = verify_backups(cfg.state_dir, "acme", "latest", load_identities(file=age_keys["file"]))
    assert problems == []
    out = tmp_path / "r.zip"
    restore(cfg.state_dir, "acme", "latest", load_identities(file=age_keys["file"]), out=out)
    assert verify_archive(out) == []
    return first, second


def test_backups_on_s3(tmp_path, age_keys, s3_server):
    first, second = _round_trip(tmp_path, age_keys, s3_server.url("acme"), s3_server.options(simple_upload_limit="64KiB",
                                                                                       chunk_size="5MiB"))
    assert set(s3_server.objects()) == {f"acme/{second['name']}"}
    assert second["checked_by"] == "sha256 on the destination"


def test_backups_on_azure(tmp_path, age_keys, azurite):
    first, second = _round_trip(tmp_path, age_keys, azurite.url("acme"), azurite.options(simple_upload_limit="64KiB",
                                                                                  chunk_size="64KiB"))
    assert set(azurite.blobs()) == {f"acme/{second['name']}"}


def test_backups_on_sftp(tmp_path, age_keys, sftp_server, password_env):
    opts = {"password_env": password_env, "known_hosts": str(sftp_server.known_hosts), "retries": 1}
    _first, second = _round_trip(tmp_path, age_keys, sftp_server.url("/backups/acme"), opts)
    assert sorted(p.name for p in (sftp_server.root / "backups" / "acme").iterdir()) == [second["name"]]
    assert second["checked_by"] == "read back and re-hashed"


def test_backups_on_ftp(tmp_path, age_keys, ftp_server, password_env):
    _first, second = _round_trip(tmp_path, age_keys, ftp_server.url("backups"),
                                 {"password_env": password_env, "retries": 1})
    assert sorted(p.name for p in (ftp_server.root / "backups").iterdir()) == [second["name"]]


def test_backups_on_dropbox(tmp_path, age_keys, tls, monkeypatch):
    from .conftest import serve_fake
    from .fake_dropbox import FakeDropbox

    monkeypatch.setenv("TEST_DBX_TOKEN", "good-token")
    for fake in serve_fake(FakeDropbox, tls):
        opts = {"token_env": "TEST_DBX_TOKEN", "api_host": fake.host, "content_host": fake.host,
                "ca_certs": str(tls[0]), "simple_upload_limit": 64 * 1024, "chunk_size": 32 * 1024, "retry_max_delay": 1}
        _first, second = _round_trip(tmp_path, age_keys, "dropbox:///backups/acme", opts)
        assert second["checked_by"] == "dropbox on the destination"


def test_backups_on_sharepoint(tmp_path, age_keys, tls, monkeypatch):
    from .conftest import serve_fake
    from .fake_sharepoint import FakeSharePoint

    monkeypatch.setenv("TEST_SP_TOKEN", "sp-token")
    lib = "/sites/Team/Shared Documents"
    for fake in serve_fake(FakeSharePoint, tls):
        fake.folders[f"{lib}/backups".lower()] = f"{lib}/backups"
        opts = {"token_env": "TEST_SP_TOKEN", "ca_bundle": str(tls[0]), "simple_upload_limit": 64 * 1024,
                "chunk_size": 320 * 1024, "retry_max_delay": 1}
        _first, second = _round_trip(tmp_path, age_keys,
                                     f"sharepoint://{fake.host}/sites/Team/Shared%20Documents/backups", opts)
        assert second["checked_by"] == "read back and re-hashed"
