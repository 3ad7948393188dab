"""Bytes from outside (a receiver's answer, an API's error page) as text fit to store and show."""

from __future__ import annotations


def as_text(data: bytes) -> str:
    """UTF-8 with U+FFFD for what does not decode and for NUL, which PostgreSQL text refuses."""
    return data.decode("utf-8", "replace").replace("\x00", "\ufffd")
