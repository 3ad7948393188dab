"""API tokens: random, shown once, stored only as a SHA-256 hash (so every node knows them)."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from hookyard.config import Settings, resolve_secret

if TYPE_CHECKING:  # the store imports this module's names
    from hookyard.store import Store

PREFIX = "hky_"
CONFIGURED_ADMIN = "admin (configured)"
GENERATED_ADMIN = "admin (generated)"
RESERVED_TOKEN_NAMES = frozenset({CONFIGURED_ADMIN, GENERATED_ADMIN})  # start-up manages them


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def bootstrap_admin(store: Store, settings: Settings, base_dir: Path) -> Path | None:
    """Make sure an admin token exists. A configured one is (re)registered; otherwise the first
    start generates one and writes it, once, to a file only its owner can read. Returns that
    file's path when a token was generated."""
    if settings.server.admin_token is not None:
        token = resolve_secret(
            settings.server.admin_token, key="server.admin_token", base_dir=base_dir
        )
        # The configured token replaces any earlier configured or generated one.
        store.replace_admin_token(hash_token(token))
        return None
    # Removed from the config (after a leak, say): the token it named must stop working.
    store.retire_configured_admin()
    if store.has_admin_token():
        return None
    token = new_token()
    path = base_dir / settings.server.token_file
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # never reuse a stale file's mode, nor follow a planted link
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    store.ensure_token(GENERATED_ADMIN, hash_token(token), "admin")
    return path


def read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
