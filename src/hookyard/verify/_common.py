"""Helpers shared by the verifiers: strict decoding, timestamps, lazy JSON facts, config checks.

Everything here runs on the ingest hot path or at construction time; nothing here ever puts a
secret or a computed signature into a message.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify.base import Item, VerifyOptions

DEFAULT_TOLERANCE = 300  # seconds; Standard Webhooks, Stripe and Slack all document 5 minutes

DIGEST_SIZES: dict[str, int] = {"sha1": 20, "sha256": 32, "sha512": 64}

_JSON_START = frozenset(b"{ \t\r\n")


class Frozen:
    """Base for verifiers: attributes are set once in ``__init__`` and never again.

    Not a frozen dataclass because the ``Verifier`` protocol declares plain (settable)
    attributes, which mypy will not match against read-only dataclass fields.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


def init(obj: object, **attrs: object) -> None:
    """Set attributes on a `Frozen` instance during construction."""
    for name, value in attrs.items():
        object.__setattr__(obj, name, value)


# --- strict decoding: a signature decodes only from its one canonical spelling --------------


def unhex(value: str, size: int) -> bytes | None:
    """Hex (either case) of exactly `size` bytes, else None; whitespace is not tolerated."""
    if len(value) != 2 * size:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) == size else None


def b64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


def unbase64(value: str, size: int) -> bytes | None:
    """Padded standard base64 of exactly `size` bytes, else None.

    Rejects non-canonical spellings (non-zero pad bits) so that any changed character of a
    signature is a different signature.
    """
    if len(value) != b64_len(size):
        return None
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size or binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        return None
    return raw


def to_bytes(value: str) -> bytes:
    """Text the gateway decoded as UTF-8 (form fields, JSON strings, configured URLs) to the
    bytes a provider signed; never raises (lone surrogates pass through)."""
    return value.encode("utf-8", "surrogatepass")


def header_bytes(value: str) -> bytes:
    """A header's value as it came over the wire: ingest reads header bytes as Latin-1, so
    encoding back gives them exactly, UTF-8 included (a request built in code may hold other
    characters: those go as UTF-8)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return to_bytes(value)


def tried(n: int) -> str:
    return "1 secret tried" if n == 1 else f"{n} secrets tried"


# --- timestamps ----------------------------------------------------------------------------


def tolerance_from(options: VerifyOptions) -> int:
    tolerance = options.tolerance
    if tolerance is None:
        return DEFAULT_TOLERANCE
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ConfigError(
            "tolerance", "expected whole seconds >= 0 (0 disables the timestamp check)"
        )
    return tolerance


def iso_seconds(value: str) -> str:
    """An ISO 8601 time (`2026-11-26T12:00:00.000Z`) as unix seconds, for check_timestamp;
    anything else is returned as it is, for check_timestamp to report as malformed."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return str(int(when.timestamp())) if when.tzinfo is not None else value


def check_timestamp(raw: str, now: float, tolerance: int, header: str) -> None:
    """Reject a signed timestamp outside ±tolerance of `now`; tolerance 0 turns the check off."""
    if not tolerance:
        return
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise VerificationError(
            f"header {header} is not a unix timestamp in whole seconds", code="bad_signature"
        )
    skew = now - int(raw)
    if skew > tolerance:
        raise VerificationError(
            f"timestamp in {header} is {whole(skew)} s old; allowed ±{tolerance} s",
            code="stale_timestamp",
        )
    if -skew > tolerance:
        raise VerificationError(
            f"timestamp in {header} is {whole(-skew)} s in the future; allowed ±{tolerance} s",
            code="stale_timestamp",
        )


def whole(seconds: float) -> str:
    """Seconds as a whole number for a message; never raises (an infinite clock reading is
    not a timestamp anyone sent, but it must not crash the verifier)."""
    return str(int(seconds)) if math.isfinite(seconds) else str(seconds)


# --- JSON facts ----------------------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (never raises)."""
    if not body or body[0] not in _JSON_START:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def json_path(doc: Mapping[str, Any] | None, path: tuple[str, ...]) -> str | None:
    """A string (or integer, as text) at a dotted path, else None. A string with a lone
    surrogate (valid JSON, not valid UTF-8) cannot be stored as an id or type: None too."""
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return None
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def json_any(body: bytes) -> Any:
    """The body as any JSON value, or None (never raises)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def shared_field(doc: Any, key: str) -> str | None:
    """The non-empty string `key` that every object of a JSON array (or the one object) has,
    when they all agree (the type of a batch of events), else None."""
    items = doc if isinstance(doc, list) else [doc]
    values = set()
    for item in items:
        value = item.get(key) if isinstance(item, dict) else None
        if not isinstance(value, str) or not value:  # a list or object is no type either
            return None
        values.add(value)
    return values.pop() if len(values) == 1 else None


def batch_items(
    body: bytes, id_key: str, type_key: str, key_fields: tuple[str, ...] = ()
) -> tuple[Item, ...]:
    """The events of a batch body (a JSON array of objects), each its exact byte slice, with
    its id and type, and, where the id alone is not unique, a dedup id of the `key_fields`
    (which include `id_key`) together. Anything else: no items (the body is one event)."""
    slices = array_slices(body)
    if not slices:
        return ()
    items = []
    for raw in slices:
        element = _loads(raw)
        if not isinstance(element, dict):
            return ()
        event_id = json_path(element, (id_key,))
        dedup_id = None
        if event_id and key_fields:
            dedup_id = orjson.dumps([json_path(element, (k,)) for k in key_fields]).decode()
        items.append(Item(raw, event_id, json_path(element, (type_key,)), dedup_id))
    return tuple(items)


@dataclass(frozen=True, slots=True)
class Fields:
    """The source's overrides for where the event id and type come from."""

    id_header: str | None = None
    type_header: str | None = None
    type_path: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, options: VerifyOptions) -> Fields:
        path: tuple[str, ...] | None = None
        if options.type_field is not None:
            path = tuple(options.type_field.split("."))
            if not all(path):
                raise ConfigError(
                    "type_field", "expected a dotted path into the JSON body, e.g. 'data.type'"
                )
        return cls(
            id_header=header_name(options.id_header, "id_header"),
            type_header=header_name(options.type_header, "type_header"),
            type_path=path,
        )

    def event_id(self, headers: Mapping[str, str]) -> str | None:
        return (headers.get(self.id_header) or None) if self.id_header else None

    def event_type(self, headers: Mapping[str, str], body: bytes) -> str | None:
        if self.type_header:
            return headers.get(self.type_header) or None
        if self.type_path:
            return json_path(json_object(body), self.type_path)
        return None

    @property
    def overrides_type(self) -> bool:
        return bool(self.type_header or self.type_path)


# --- configuration -------------------------------------------------------------------------


def header_name(value: str | None, key: str) -> str | None:
    """A configured header name, lower-cased the way `Inbound.headers` holds them."""
    if value is None:
        return None
    name = value.strip().lower()
    if not name or any(c in name for c in " \t\r\n:"):
        raise ConfigError(key, f"expected an HTTP header name, got {value!r}")
    return name


def require_secrets(scheme: str, secrets: Sequence[str]) -> list[str]:
    """The secrets as a list, non-empty, with no blank entry (entries are never echoed)."""
    if isinstance(secrets, str | bytes):
        raise ConfigError("secrets", "expected a list of secrets, got a single string")
    items = list(secrets)
    if not items:
        raise ConfigError(
            "secrets", f"scheme {scheme!r} needs at least one secret (several for rotation)"
        )
    for n, secret in enumerate(items, 1):
        if not isinstance(secret, str) or not secret.strip():
            raise ConfigError("secrets", f"secret #{n} is empty or not a string")
    return items


def utf8_keys(
    scheme: str, secrets: Sequence[str], algorithm: str = "sha256"
) -> tuple[hmac.HMAC, ...]:
    """Secrets used as their UTF-8 bytes, as Stripe, Slack, GitHub and Shopify do."""
    return keyed([s.encode("utf-8") for s in require_secrets(scheme, secrets)], algorithm)


def keyed(keys: Sequence[bytes], algorithm: str = "sha256") -> tuple[hmac.HMAC, ...]:
    """HMAC objects with the key pads already hashed: copying one per request is ~30% faster
    than `hmac.digest`, which re-derives them. Copying never mutates the shared originals."""
    return tuple(hmac.new(key, digestmod=algorithm) for key in keys)


def mac(base: hmac.HMAC, head: bytes, body: bytes) -> bytes:
    """HMAC of ``head + body`` without concatenating (the body may be large)."""
    m = base.copy()
    if head:
        m.update(head)
    m.update(body)
    return m.digest()


def any_match(bases: tuple[hmac.HMAC, ...], head: bytes, body: bytes, signature: bytes) -> bool:
    """Whether any key's HMAC equals `signature` (constant-time per comparison)."""
    return any(hmac.compare_digest(mac(base, head, body), signature) for base in bases)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_INVALID = object()


def _loads(data: bytes) -> Any:
    """JSON as Python, or _INVALID; never raises. orjson refuses integers beyond 64 bits,
    lone surrogate escapes and nesting beyond 1,024, which JSON (and json) allow."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return _INVALID


def array_slices(body: bytes) -> list[bytes] | None:
    """The exact bytes of each element of a JSON array body (whitespace around them trimmed),
    or None if the body is not a JSON array. Batch events keep the bytes the provider sent."""
    doc = _loads(body)
    if not isinstance(doc, list):
        return None
    slices: list[bytes] = []
    depth, in_string, escaped, start = 0, False, False, -1
    for index, byte in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth == 1:
                start = index + 1
        elif byte in (0x5D, 0x7D):  # ] }
            if depth == 1:
                slices.append(body[start:index].strip())
            depth -= 1
        elif byte == 0x2C and depth == 1:  # a comma between top-level elements
            slices.append(body[start:index].strip())
            start = index + 1
    if slices == [b""]:  # []
        slices = []
    return slices if len(slices) == len(doc) else None
