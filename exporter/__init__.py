"""exporter: take a whole Kizeo Forms account out, to files, SQL databases and remote storage.

The public Python API (see ``exporter.api``)::

    from exporter import export, archive, verify

    summary = export("account.zip", ["sqlite:///kizeo.db", "./out"], formats=["json", "csv"])
"""
__version__ = "0.5.0"

from .api import Verification, archive, export, list_forms, verify  # noqa: E402
from .errors import ConfigError, ExporterError  # noqa: E402
from .pipeline import RunSummary  # noqa: E402

__all__ = ["ConfigError", "ExporterError", "RunSummary", "Verification", "__version__", "archive", "export",
           "list_forms", "verify"]
