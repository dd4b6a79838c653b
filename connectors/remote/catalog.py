"""The remote storages as the registry sees them: each is a ``Remote`` (entry point group
``exporter.remotes``: what ``create_remote`` builds) and, through the remote sink, a
``Destination`` (group ``exporter.sinks``) taking the file formats, its options being the remote
sink's (``SINK_OPTIONS``), then the remote's own. A local folder is a remote too (``LOCAL``: where
backups go when given a path), not a destination (that is the files destination). Imports no SDK."""
from __future__ import annotations

from exporter.options import Option, secret
from exporter.registry import Destination, Remote

#: what every move of files to a remote reads (``transfer.Transfer``: the remote sink, the backups)
TRANSFER_OPTIONS = (
    Option("retries", "int", 5, "retries of a failed upload or listing (transient errors only)", min=0),
    Option("retry_base_delay", "float", 0.5, "seconds before the first retry (doubled each time)", min=0),
    Option("retry_max_delay", "float", None, "longest wait between two retries, in seconds (default 30; 60 for "
           "Dropbox and SharePoint, which retry each request themselves)", min=0),
    Option("chunk_size", "size", None, "bytes per upload chunk or part (default 8 MiB; SharePoint rounds it to "
           "320 KiB multiples, default 10 MiB; S3 at least 5 MiB)", min=1),
)
#: what the remote sink reads, whatever the remote
SINK_OPTIONS = TRANSFER_OPTIONS + (
    Option("staging_dir", "path", None, "local folder for the files staged before upload (default: the system's "
           "temporary folder)"),
)

_SERVER = (
    *secret("password", "login password"),
    Option("timeout", "float", 60.0, "seconds to wait for the server", min=0.001),
    Option("max_path_length", "int", 4096, "longest remote path (260 for IIS-like servers)", min=1),
    Option("max_name_length", "int", 255, "longest file or folder name", min=1),
    Option("forbidden_chars", "text", "", "characters the server refuses in names (renamed safely)"),
    Option("case_insensitive", "bool", False, "the server folds case: names differing by case collide"),
)
_FTP = _SERVER + (
    Option("ca_file", "path", None, "CA bundle verifying the FTPS certificate (default: the system's)"),
    Option("passive", "bool", True, "passive mode data connections"),
)
_SFTP = _SERVER + (
    Option("key_file", "path", None, "private key file (default: the SSH agent and ~/.ssh keys)"),
    *secret("key_passphrase", "passphrase of key_file"),
    Option("known_hosts", "path", None, "known_hosts file the host key is checked against (default "
           "~/.ssh/known_hosts)"),
    Option("trust_on_first_use", "bool", False, "record an unknown host's key instead of refusing it"),
)


def _sdk(default_env: str) -> tuple[Option, ...]:
    token = secret("token", "access token", default_env=default_env)
    return token + (
        Option("simple_upload_limit", "size", None, "largest file sent in one request; bigger ones go in an "
               "upload session", min=1),
        Option("chunk_size", "size", None, "bytes per upload session chunk", min=1),
        Option("attempts", "int", None, "attempts per request (transient errors)", min=1),
        Option("retry_max_delay", "float", None, "longest wait between two attempts, in seconds", min=0),
        Option("timeout", "float", None, "seconds to wait for an answer", min=0.001),
    )


_DROPBOX = _sdk("DROPBOX_TOKEN") + (
    *secret("refresh_token", "refresh token", default_env="DROPBOX_REFRESH_TOKEN"),
    Option("app_key", "text", None, "app key used with a refresh token (not a secret)"),
    Option("app_key_env", "env", "DROPBOX_APP_KEY", "environment variable holding the app key"),
    *secret("app_secret", "app secret", default_env="DROPBOX_APP_SECRET"),
    Option("api_host", "text", None, "host:port replacing api.dropboxapi.com (tests)"),
    Option("content_host", "text", None, "host:port replacing content.dropboxapi.com (tests)"),
    Option("ca_certs", "path", None, "CA bundle for TLS verification (tests)"),
)
_SHAREPOINT = _sdk("SHAREPOINT_TOKEN") + (
    Option("tenant", "text", None, "tenant for app-only login (default $SHAREPOINT_TENANT)"),
    Option("client_id", "text", None, "application id for app-only login (default $SHAREPOINT_CLIENT_ID)"),
    *secret("client_secret", "client secret for app-only login", default_env="SHAREPOINT_CLIENT_SECRET"),
    Option("cert_path", "path", None, "certificate file for app-only login (passphrase in "
           "$SHAREPOINT_CERT_PASSPHRASE)"),
    Option("thumbprint", "text", None, "thumbprint of cert_path's certificate"),
    Option("site_path", "text", None, "the site's path when the URL names a sub-site (/sites/a/sub)"),
    Option("ca_bundle", "path", None, "CA bundle for TLS verification"),
)

_OBJECT_STORE = TRANSFER_OPTIONS + (
    Option("ca_bundle", "path", None, "CA bundle for TLS verification (verification is always on)"),
    Option("simple_upload_limit", "size", None, "largest file sent in one request (default 8 MiB); bigger ones "
           "go in parts", min=1),
    Option("upload_concurrency", "int", 4, "parts in flight at once (memory: parts x chunk_size)", min=1),
    Option("timeout", "float", 60.0, "seconds to wait for an answer", min=0.001),
)
_S3 = _OBJECT_STORE + (
    Option("endpoint_url", "text", None, "an S3-compatible service (https://minio.example.com:9000)"),
    Option("region", "text", None, "the bucket's region"),
    Option("path_style", "bool", False, "path-style addressing (most S3-compatible stores need it)"),
    Option("profile", "text", None, "a profile of ~/.aws/credentials (else boto3's chain: AWS_* variables...)"),
    *secret("access_key_id", "access key id"),
    *secret("secret_access_key", "secret access key"),
    *secret("session_token", "session token"),
)
_AZURE = _OBJECT_STORE + (
    Option("endpoint", "text", None, "the account URL when not https://ACCOUNT.blob.core.windows.net (Azurite, "
           "sovereign clouds)"),
    *secret("account_key", "account's shared key"),
    *secret("sas_token", "SAS token"),
    *secret("connection_string", "connection string (endpoint included)"),
)

FTP = Remote("ftp", "exporter.connectors.remote.ftp_remote:create_remote", "FTP server", _FTP,
             "ftp://user@host:21/path", ("ftp",), order=80)
FTPS = Remote("ftps", "exporter.connectors.remote.ftp_remote:create_remote", "FTP with explicit TLS", _FTP,
              "ftps://user@host:21/path", ("ftps",), order=90)
SFTP = Remote("sftp", "exporter.connectors.remote.sftp_remote:create_remote",
              "SFTP server (host key checked against known_hosts)", _SFTP, "sftp://user@host:22/path", ("sftp",),
              "sftp", ("paramiko",), order=100)
DROPBOX = Remote("dropbox", "exporter.connectors.remote.dropbox_remote:create_remote",
                 "Dropbox (upload sessions, content hash)", _DROPBOX, "dropbox:///path", ("dropbox",), "dropbox",
                 ("dropbox",), order=110)
SHAREPOINT = Remote("sharepoint", "exporter.connectors.remote.sharepoint_remote:create_remote",
                    "SharePoint document library (upload sessions)", _SHAREPOINT,
                    "sharepoint://tenant.sharepoint.com/sites/SITE/LIBRARY/path", ("sharepoint",), "sharepoint",
                    ("office365",), order=120)

S3 = Remote("s3", "exporter.connectors.remote.s3_remote:create_remote",
            "Amazon S3 or S3-compatible object storage (multipart uploads, sha256 kept with each object)", _S3,
            "s3://bucket/prefix", ("s3",), "s3", ("boto3",), order=130)
AZURE = Remote("azure", "exporter.connectors.remote.azure_remote:create_remote",
               "Azure Blob Storage (block uploads, sha256 kept with each blob)", _AZURE,
               "azure://account/container/prefix", ("azure",), "azure", order=140)
LOCAL = Remote("file", "exporter.connectors.remote.local_remote:create_remote", "a folder of this machine", (),
               "/path or file:///abs/path", ("file",), order=150, paths=True)


def destination(remote: Remote) -> Destination:
    """``remote`` as a destination: the remote sink over it, writing the file formats."""
    names = {o.name for o in SINK_OPTIONS}
    options = SINK_OPTIONS + tuple(o for o in remote.options if o.name not in names)
    return Destination(remote.key, "exporter.connectors.remote:create_sink", remote.description, options,
                       remote.url_form, remote.schemes, remote.extra, remote.modules, remote.order, formats=True)


FTP_SINK, FTPS_SINK, SFTP_SINK = destination(FTP), destination(FTPS), destination(SFTP)
DROPBOX_SINK, SHAREPOINT_SINK = destination(DROPBOX), destination(SHAREPOINT)
S3_SINK, AZURE_SINK = destination(S3), destination(AZURE)
