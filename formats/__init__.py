"""File formats: one writer per format, registered by key (``json``, ``csv``, ``xlsx``...) in the
entry point group ``exporter.formats`` (declarations in ``formats.catalog``)."""
from .base import FormatWriter, OutputDir, get_writer_class, known_formats

__all__ = ["FormatWriter", "OutputDir", "get_writer_class", "known_formats"]
