"""File formats: one writer per format, looked up by key (``json``, ``csv``, ``xlsx``...)."""
from .base import FORMATS, FormatWriter, OutputDir, get_writer_class, known_formats

__all__ = ["FORMATS", "FormatWriter", "OutputDir", "get_writer_class", "known_formats"]
