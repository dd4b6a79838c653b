"""exporter: take a whole Kizeo Forms account out, to files, SQL databases and remote storage."""
__version__ = "0.5.0"
