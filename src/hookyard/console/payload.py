"""An event's payload as the event page shows it: pretty JSON, text, or base64 for bytes, with
the values of known credential fields masked (a Slack verification `token`, a Microsoft Graph
`clientState`): they cannot be cut from the stored bytes without breaking them, but the page
need not show them. The API's raw endpoint, for admin tokens, serves the bytes unmasked."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from hookyard.gateway import CREDENTIAL_PARAMS, REDACTED

SHOWN = 256 * 1024  # bytes of a payload put in the page; the API serves the whole of it
# Characters of formatted JSON at most: deep nesting is mostly indentation (1 KB nested 500
# deep takes 500 KB), so beyond this the body is shown as received instead.
PRETTY_LIMIT = 8 * SHOWN
# Field names (any case, at any depth) whose values are credentials.
CREDENTIAL_FIELDS = CREDENTIAL_PARAMS | {"clientstate", "refresh_token", "verification_token"}

# A JSON string, up to its closing quote or, in a cut or malformed text, to the end: it always
# matches at a quote, so a scan from string to string never falls out of step (a quote inside a
# string is escaped), and never backtracks.
_STRING = r'"(?:[^"\\]|\\[\s\S])*+(?:"|\\?\Z)'
# A string, and the string value that follows it if it is a field's name.
_PAIR = re.compile(rf"({_STRING})(?:(\s*:\s*)({_STRING}))?")
# The tokens of valid JSON: strings, punctuation, and literals (numbers, true, false, null).
_TOKEN = re.compile(_STRING + r'|[\[\]{},:]|[^\s\[\]{},:"]+')
_SURROGATE = re.compile(r"[\ud800-\udfff]")


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


def _name(key: str) -> str:
    try:
        return str(json.loads(key))  # "\u0074oken" is a token too
    except ValueError:  # cut, or not JSON
        return key[1:-1]


def _mask_fields(text: str) -> str:
    """`text` with the string value of each credential field masked. Fields are found by
    position (a name, a colon, a string), not by the value's spelling, which senders vary
    ("\\/", \\u escapes, raw UTF-8); this works in JSON, NDJSON and text cut anywhere."""

    def mask(match: re.Match[str]) -> str:
        key, gap, value = match.group(1, 2, 3)
        if value is None or value == '""' or _name(key).lower() not in CREDENTIAL_FIELDS:
            return match.group(0)
        return f'{key}{gap}"{REDACTED}"'

    return _PAIR.sub(mask, text)


def _string(token: str) -> str:
    """A JSON string as the formatted view shows it, escapes decoded; except one holding a lone
    surrogate (JavaScript's "\\ud83d" for a string cut mid-emoji), which UTF-8 cannot carry:
    that one stays as sent."""
    shown = json.dumps(json.loads(token), ensure_ascii=False)
    return token if _SURROGATE.search(shown) else shown


def _pretty(text: str) -> str | None:
    """Valid JSON laid out like json.dumps(indent=2), token by token: without recursion, and
    with numbers as sent (through float, 12345678901234567.89 became 1.2345678901234568e+16).
    None when longer than PRETTY_LIMIT."""
    out: list[str] = []
    size = depth = 0
    previous = ""
    for token in _TOKEN.findall(text):
        lead = ""
        if token in ("]", "}"):
            depth -= 1
            if previous not in ("[", "{"):  # an empty array or object stays [] or {}
                lead = "\n" + "  " * depth
        elif previous in ("[", "{", ","):
            lead = "\n" + "  " * depth
        piece = lead + (": " if token == ":" else _string(token) if token[0] == '"' else token)
        size += len(piece)
        if size > PRETTY_LIMIT:
            return None
        out.append(piece)
        if token in ("[", "{"):
            depth += 1
        previous = token
    return "".join(out)


def _mask_form(text: str) -> str:
    """A form with its credential parameters masked, and the credential fields of any JSON
    document carried in a parameter (Slack's interactions: payload={...}); as received when
    there is nothing to mask."""
    pairs = parse_qsl(text.strip(), keep_blank_values=True)
    masked = [
        (k, REDACTED if k.lower() in CREDENTIAL_FIELDS and v else _mask_fields(v)) for k, v in pairs
    ]
    return text if masked == pairs else urlencode(masked, safe="[]")


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
    masked = _mask_fields(text)  # whatever the text turns out to be: JSON, NDJSON, a cut
    if not truncated:
        body = text.removeprefix("\ufeff").strip()  # json.loads refuses a byte-order mark
        try:
            json.loads(body)  # only to know it is JSON: the views are made from the text
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            pretty = None
        else:
            pretty = _pretty(masked.removeprefix("\ufeff"))
        if pretty is not None:
            return PayloadView("json", masked, pretty, len(payload), False)
        if _form(body):
            return PayloadView("text", _mask_form(masked), None, len(payload), False)
    return PayloadView("text", masked, None, len(payload), truncated)
