"""The built-in sources and the files and archive destinations as the registry sees them (entry
point groups ``exporter.sources`` and ``exporter.sinks``). Imports nothing heavy: each factory is
imported when it is used."""
from __future__ import annotations

from exporter.options import Option, secret
from exporter.registry import Destination, Source

# ---- sources -------------------------------------------------------------------------------------

#: vendor documents, opt-in: fetched from the service, or replayed from an archive that holds them
_DOCUMENTS = (
    Option("vendor_pdf", "bool", False, "also each submission's standard PDF as the service makes it (data/{id}/pdf)"),
    Option("vendor_exports", "bool", False, "also each submission through every custom Word/Excel export of its "
           "form (forms/{id}/exports)"),
)

KIZEO = Source(
    "kizeo", "exporter.connectors.kizeo:build_web_source", "the Kizeo Forms web service (REST v3)",
    (
        *secret("token", "API token", default_env="KIZEO_TOKEN"),
        Option("login_env", "env", None, "legacy POST /login with PREFIX_USER, PREFIX_PASSWORD and PREFIX_COMPANY "
               "from the environment (the prefix; renewed before expiry)", secret=True),
        Option("workers", "int", 4, "parallel requests for submissions and media; auto adapts them to the "
               "service (1 to 16)", min=1, max=32, choices=("auto",)),
        Option("page_size", "int", 100, "records per page of --incremental unread", min=1, max=10000),
        Option("skip", "list", (), "account parts the token may not read, left out", choices=("users", "groups", "lists")),
        Option("timezone", "text", None, "account time zone (IANA, e.g. Europe/Paris), recorded with the data"),
        Option("ca_bundle", "path", None, "CA bundle for TLS verification (verification is always on)"),
        Option("timeout", "float", 120.0, "read timeout per request, in seconds", min=0.001),
        *_DOCUMENTS,
    ),
    "https://forms.kizeo.com/rest/v3", ("https", "http"), order=10,
)

ARCHIVE_SOURCE = Source("archive", "exporter.connectors.archive.source:ArchiveSource",
                        "an account archive (directory or .zip), replayed offline", _DOCUMENTS, "PATH[.zip]", order=20,
                        paths=True)

# ---- destinations --------------------------------------------------------------------------------

FILES = Destination(
    "files", "exporter.connectors.files:create_sink", "a directory of files in the chosen formats, media alongside",
    (Option("deltas", "bool", False, "incremental runs also write what the run changed under runs/<run id>/"),),
    "./dir or file:///abs/dir", ("file",), order=10, formats=True, paths=True,
)

ARCHIVE = Destination(
    "archive", "exporter.connectors.archive.sink:create_sink",
    "a full account archive (manifest + JSON + media), replayable as a source",
    (Option("zip", "bool", None, "write one .zip file (default: when the path ends in .zip)"),),
    "archive:///path[.zip]", ("archive",), order=20,
)
