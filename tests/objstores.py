"""Real object stores for the tests, started on their own ports: moto's S3 server
(``moto.server.ThreadedMotoServer``) and Azurite's blob service (the npm package, installed by
``npm ci`` into ./node_modules: see package.json and .ci/run). Each test reaches them through a
``FaultProxy`` that puts HTTPS (with a test CA the client verifies) in front and can drop a
connection in the middle of an upload.

Fixtures (registered by the conftest files that import them): ``s3_server``, ``azurite``.
In CI (CI=true) a missing moto or Azurite fails the test instead of skipping it.
"""
from __future__ import annotations

import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_service, wait_port
from tests.connectors.remote.fake_http import make_tls_files
from tests.connectors.remote.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's documented development account (public, the same for everyone)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
FAST = {"retries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "timeout": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def store_tls(tmp_path_factory):
    """(CA file, server certificate, server key) for the proxies' HTTPS."""
    return make_tls_files(tmp_path_factory.mktemp("store-tls"))


@dataclass
class S3Server:
    port: int  # moto itself, plain HTTP
    proxy: FaultProxy  # HTTPS in front of it, with faults
    ca: Path
    bucket: str = field(default_factory=lambda: f"b-{uuid.uuid4().hex[:12]}")

    def client(self):
        """A boto3 client straight to moto, to look at what the tests stored."""
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def url(self, prefix: str = "export") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def options(self, **extra) -> dict:
        return {"endpoint_url": self.proxy.url, "ca_bundle": str(self.ca), "path_style": True, "region": "us-east-1",
                "access_key_id_env": "S3_TEST_KEY_ID", "secret_access_key_env": "S3_TEST_SECRET", **FAST, **extra}

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", ()):
                out[o["Key"]] = c.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
        return out


@pytest.fixture(scope="session")
def _moto_port():
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require_service(False, "moto's S3 server (pip install 'moto[server]')")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_port(port)
    yield port
    server.stop()


@pytest.fixture
def s3_server(_moto_port, store_tls, monkeypatch):
    """moto behind a fresh TLS proxy, with a new bucket; credentials in S3_TEST_KEY_ID/S3_TEST_SECRET."""
    ca, cert, key = store_tls
    monkeypatch.setenv("S3_TEST_KEY_ID", "AKIATESTKEYID")
    monkeypatch.setenv("S3_TEST_SECRET", "test-secret-access-key")
    proxy = FaultProxy(_moto_port, tls=(cert, key))
    srv = S3Server(_moto_port, proxy, ca)
    srv.client().create_bucket(Bucket=srv.bucket)
    yield srv
    proxy.close()


@dataclass
class Azurite:
    port: int
    proxy: FaultProxy
    ca: Path
    container: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:12]}")

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def service(self):
        """A client straight to Azurite, to look at what the tests stored."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def url(self, prefix: str = "export") -> str:
        return f"azure://{AZURITE_ACCOUNT}/{self.container}/{prefix}"

    def options(self, **extra) -> dict:
        return {"endpoint": f"{self.proxy.url}/{AZURITE_ACCOUNT}", "ca_bundle": str(self.ca),
                "account_key_env": "AZURE_TEST_KEY", **FAST, **extra}

    def blobs(self, prefix: str = "") -> dict[str, bytes]:
        c = self.service().get_container_client(self.container)
        return {b.name: c.download_blob(b.name).readall() for b in c.list_blobs(name_starts_with=prefix or None)}


@pytest.fixture(scope="session")
def _azurite_port(tmp_path_factory):
    require_service(AZURITE.exists(), f"Azurite ({AZURITE}; install it with `npm ci` at the repository root)")
    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    log = open(data / "azurite.log", "wb")  # closed below
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                             str(data), "--silent", "--skipApiVersionCheck", "--loose"],
                            stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, tries=600)
    if proc.poll() is not None:
        log.close()
        pytest.fail(f"Azurite did not start: {(data / 'azurite.log').read_text()[-2000:]}")
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def azurite(_azurite_port, store_tls, monkeypatch):
    """Azurite behind a fresh TLS proxy, with a new container; the account key in AZURE_TEST_KEY."""
    ca, cert, key = store_tls
    monkeypatch.setenv("AZURE_TEST_KEY", AZURITE_KEY)
    proxy = FaultProxy(_azurite_port, tls=(cert, key))
    srv = Azurite(_azurite_port, proxy, ca)
    srv.service().create_container(srv.container)
    yield srv
    proxy.close()
