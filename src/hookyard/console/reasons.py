"""What each rejection code means for the operator, in plain words.

The stored reason (written where the request was refused, in api/ingest.py and verify/) is
already specific: which header was missing, which signature scheme was expected, how many
secrets were tried, how far off a timestamp was. It does not say what usually causes it or what
to check, which is what these sentences add under it on the Rejected page.
"""

from __future__ import annotations

EXPLANATIONS = {
    "missing_signature": (
        "The request carried no signature, so its sender could not be checked. Usually the "
        "provider's webhook has no signing secret set, or the request did not come from the "
        "provider at all (a manual test, a scanner)."
    ),
    "bad_signature": (
        "The request was signed, but with none of this source's secrets. Usually the secret "
        "differs between the provider and Hookyard (rotated on one side only), or something "
        "between them changed the body or the URL."
    ),
    "stale_timestamp": (
        "The signed time is too far from this server's clock, which is how replayed requests "
        "are refused. A provider retrying very late, or a server clock that is off (check NTP), "
        "also cause it."
    ),
    "bad_credentials": (
        "The token or password the request carried matches none of this source's. Check what "
        "the provider is configured to send."
    ),
    "unknown_source": (
        "The URL names no webhook source of this configuration: a typo in the URL set at the "
        "provider, or a source that was renamed or removed."
    ),
    "method_not_allowed": "Webhooks must be POSTed; something sent another method.",
    "body_too_large": (
        "The body is larger than this source accepts. If such payloads are expected, raise "
        "max_body: the source's own, or server.max_body for every source."
    ),
    "headers_too_large": "The request's headers are larger than server.max_header_bytes allows.",
    "not_a_hint": (
        "The body is not the short notification this provider sends (only an id to fetch), "
        "so there was nothing to fetch."
    ),
    "fetch_failed": (
        "The notification was accepted, but fetching the object it names from the provider's "
        "API failed for good; no event was stored for it."
    ),
}


def explain(code: str) -> str | None:
    return EXPLANATIONS.get(code)
