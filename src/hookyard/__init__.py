"""Hookyard: a self-hosted integration gateway."""

__version__ = "0.1.0"
