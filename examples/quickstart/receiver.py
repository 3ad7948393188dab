"""A tiny webhook receiver for the quickstart: verifies Hookyard's signature and prints events.

    python examples/quickstart/receiver.py [--port 9000] [--secret whsec_...]

Standard library only. It checks `webhook-signature` (Standard Webhooks), rejects stale
timestamps, and skips duplicates by `webhook-id`, which is how a receiver turns at-least-once
delivery into exactly-once effect.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEMO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
seen: set[str] = set()


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for candidate in header.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(signature), expected):
            return abs(time.time() - int(timestamp)) < 300
    return False


def handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            msg_id = self.headers.get("webhook-id", "")
            ok = verify(secret, msg_id, self.headers.get("webhook-timestamp", "0"), body,
                        self.headers.get("webhook-signature", ""))
            if not ok:
                print(f"REJECTED {msg_id}: bad signature", flush=True)
                self.send_response(401)
            else:
                note = " (duplicate, ignored)" if msg_id in seen else ""
                seen.add(msg_id)
                kind = self.headers.get("hookyard-event-type", "?")
                print(f"received {msg_id} type={kind} {len(body)} bytes{note}: "
                      f"{body[:120].decode('utf-8', 'replace')}", flush=True)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default=DEMO_SECRET)
    args = parser.parse_args()
    print(f"receiver listening on http://127.0.0.1:{args.port}/hooks", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.secret)).serve_forever()
