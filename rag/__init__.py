"""Grounded, cited question answering over a document corpus."""

__version__ = "0.1.0"
