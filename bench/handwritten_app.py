"""The receiver people write by hand: FastAPI, verify GitHub's HMAC, commit to SQLite.

Written the way the typical tutorial does it: an `async def` route calling sqlite3 directly on
one module-level connection (so each commit, fsync included, blocks the event loop), WAL with
synchronous=FULL so an acknowledged event survives power loss, one commit per request.
No dedup index on the delivery id: tutorials rarely add one, and it keeps this baseline at its
fastest (the comparison errs in its favour).
The database path and secret come from the environment (the bench sets them).
"""

import hashlib
import hmac
import os
import sqlite3
import time

from fastapi import FastAPI, Header, HTTPException, Request

SECRET = os.environ.get("BENCH_SECRET", "bench-secret").encode()

db = sqlite3.connect(os.environ.get("HANDWRITTEN_DB", "handwritten.db"), check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute(
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, delivery TEXT, "
    "event TEXT, payload BLOB, received_at REAL)"
)
db.commit()

app = FastAPI()


@app.post("/in/bench")
async def github_webhook(
    request: Request,
    x_hub_signature_256: str = Header(default=""),
    x_github_event: str = Header(default=""),
    x_github_delivery: str = Header(default=""),
) -> dict[str, bool]:
    body = await request.body()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, x_hub_signature_256):
        raise HTTPException(status_code=401, detail="bad signature")
    db.execute(
        "INSERT INTO events (delivery, event, payload, received_at) VALUES (?, ?, ?, ?)",
        (x_github_delivery, x_github_event, body, time.time()),
    )
    db.commit()
    return {"ok": True}
