"""Strict form-body parsing for the schemes that sign or carry form fields (Twilio, Mailgun).

Strict on purpose: a body is read only in its one plain spelling (ASCII, every field
``name=value``, well-formed percent escapes decoding to UTF-8), so that no two different
parameter lists come from one body and odd bodies are refused instead of guessed at. Nothing
here raises: a body that is not a form is ``None``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# A space is sent as "+", controls percent-escaped: literal ones would make "+" and " " (say)
# two spellings of one parameter list.
_LITERAL = re.compile(rb"[\x00-\x20\x7f]")
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))""", re.IGNORECASE)
_NAME = re.compile(rb"""(?:^|;)\s*name="([^"]*)"(?:\s*;|\s*$)""", re.IGNORECASE)
_FILENAME = re.compile(rb"""(?:^|;)\s*filename\*?=""", re.IGNORECASE)


def _unquote(raw: bytes) -> str | None:
    if _BAD_ESCAPE.search(raw):
        return None
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def urlencoded(body: bytes) -> list[tuple[str, str]] | None:
    """``application/x-www-form-urlencoded`` fields in order; ``[]`` for an empty body;
    None unless every byte is printable ASCII and every field is ``name=value``."""
    if not body:
        return []
    if not body.isascii() or _LITERAL.search(body):
        return None
    pairs = []
    for field in body.split(b"&"):
        name, eq, value = field.partition(b"=")
        if not eq or not name:
            return None
        decoded_name = _unquote(name)
        decoded_value = _unquote(value)
        if decoded_name is None or decoded_value is None:
            return None
        pairs.append((decoded_name, decoded_value))
    return pairs


def boundary_of(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, else None."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        return None
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    value = match.group(1) or match.group(2)
    return value.encode("ascii") if value.isascii() else None


def multipart_fields(body: bytes, boundary: bytes, wanted: frozenset[str]) -> dict[str, list[str]]:
    """The text values of the `wanted` fields of a ``multipart/form-data`` body (file parts
    and parts that are not UTF-8 are skipped). Only what is needed is decoded."""
    found: dict[str, list[str]] = {}
    segments = (b"\r\n" + body).split(b"\r\n--" + boundary)
    for segment in segments[1:]:  # segments[0] is the preamble
        if segment.startswith(b"--"):
            break  # the close delimiter
        head, sep, content = segment.partition(b"\r\n\r\n")
        if not sep:
            continue
        padding, *lines = head.split(b"\r\n")
        if padding.strip(b" \t"):
            continue  # "--boundary" was only the start of a longer line: not a delimiter
        name = None
        for line in lines:
            key, colon, value = line.partition(b":")
            if colon and key.strip().lower() == b"content-disposition":
                if _FILENAME.search(value):
                    break
                match = _NAME.search(value.strip())
                if match is not None:
                    name = match.group(1)
        if name is None:
            continue
        try:
            text_name = name.decode("utf-8")
            if text_name in wanted:
                found.setdefault(text_name, []).append(content.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return found
