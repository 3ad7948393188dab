"""Hookyard's outbound signature: Standard Webhooks, so receivers can use any of its libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for the webhook-signature header."""
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()
