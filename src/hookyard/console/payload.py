"""An event's payload as the event page shows it: pretty JSON, text, or base64 for bytes, with
the values of known credential fields masked (a Slack verification `token`, a Microsoft Graph
`clientState`): they cannot be cut from the stored bytes without breaking them, but the page
need not show them. The API's raw endpoint, for admin tokens, serves the bytes unmasked."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus

from hookyard.gateway import CREDENTIAL_PARAMS, REDACTED, redact_query

SHOWN = 256 * 1024  # bytes of a payload put in the page; the API serves the whole of it
# Field names (any case, at any depth) whose values are credentials.
CREDENTIAL_FIELDS = CREDENTIAL_PARAMS | {"clientstate", "refresh_token", "verification_token"}
# The raw view masks a credential's value wherever it appears; shorter values (a flag, a
# count under a generic name like "key") would mask unrelated text, so they are left there.
MASKED_IN_RAW = 8


@dataclass(frozen=True)
class PayloadView:
    kind: Literal["removed", "empty", "json", "text", "binary"]
    raw: str  # the text as received, or base64 when the bytes are not UTF-8
    pretty: str | None  # indented JSON
    size: int
    truncated: bool  # only the first SHOWN bytes are in `raw` (and nothing is pretty)


def _text(data: bytes, cut: bool) -> str | None:
    """The bytes as UTF-8 text, or None for binary. A cut may have split the last character:
    up to three trailing bytes of a cut payload are dropped to find the boundary."""
    for trim in range(4 if cut else 1):
        try:
            return data[: len(data) - trim].decode()
        except UnicodeDecodeError:
            continue
    return None


def _masked(document: Any, secrets: set[str]) -> Any:
    """The document with credential fields' values masked; `secrets` collects those values."""
    if isinstance(document, dict):
        masked = {}
        for key, value in document.items():
            if key.lower() in CREDENTIAL_FIELDS and isinstance(value, str) and value:
                secrets.add(value)
                masked[key] = REDACTED
            else:
                masked[key] = _masked(value, secrets)
        return masked
    if isinstance(document, list):
        return [_masked(item, secrets) for item in document]
    return document


def _mask_raw(text: str, secrets: set[str], *, encoded: bool = False) -> str:
    """`text` with each secret's JSON form masked (and its URL-encoded forms, in a form)."""
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        if len(secret) >= MASKED_IN_RAW:
            escaped = json.dumps(secret)[1:-1]
            forms = {escaped}
            if encoded:
                forms |= {quote_plus(escaped), quote(escaped, safe="")}
            for form in forms:
                text = text.replace(form, REDACTED)
    return text


# A credential field with a string value in JSON text, for payloads too long to parse whole.
_FIELD = re.compile(
    r'("(?:' + "|".join(map(re.escape, sorted(CREDENTIAL_FIELDS))) + r')"\s*:\s*")'
    r'(?:[^"\\]|\\.)*(")',
    re.IGNORECASE,
)


def _mask_form(text: str) -> str:
    """A form with its credential parameters masked, and the credential fields of any JSON
    document carried in a parameter (Slack's interactions: payload={...})."""
    secrets: set[str] = set()
    for _, value in parse_qsl(text):
        if value.startswith(("{", "[")):
            try:
                _masked(json.loads(value), secrets)
            except ValueError:
                continue
    return _mask_raw(redact_query(text), secrets, encoded=True)


def _form(text: str) -> bool:
    """A URL-encoded form (Slack's slash commands and interactions)."""
    return "=" in text and not any(c.isspace() for c in text) and bool(parse_qsl(text))


def view(payload: bytes | None) -> PayloadView:
    if payload is None:  # retention removed the bytes; the event's record stays
        return PayloadView("removed", "", None, 0, False)
    if not payload:
        return PayloadView("empty", "", None, 0, False)
    truncated = len(payload) > SHOWN
    shown = payload[:SHOWN]
    text = _text(shown, truncated)
    if text is None:
        return PayloadView(
            "binary", base64.b64encode(shown).decode(), None, len(payload), truncated
        )
    if not truncated:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            secrets: set[str] = set()
            pretty = json.dumps(_masked(parsed, secrets), indent=2, ensure_ascii=False)
            return PayloadView("json", _mask_raw(text, secrets), pretty, len(payload), False)
        if _form(text):
            return PayloadView("text", _mask_form(text), None, len(payload), False)
    else:  # too long to parse: mask credential fields by their look
        text = _FIELD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    return PayloadView("text", text, None, len(payload), truncated)
