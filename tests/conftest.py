"""Shared fixtures: a real Hookyard on loopback, real receivers, real SQLite files and the
machine's real PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from aiohttp import web

from hookyard.config import load_config
from hookyard.runtime import Service, http_config
from hookyard.tokens import read_token_file

GITHUB_SECRET = "It's a Secret to Everybody"
DEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def github_push(body: bytes, delivery: str) -> dict[str, str]:
    """The headers GitHub sends with a push: signed with GITHUB_SECRET, `delivery` its id."""
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": delivery,
        "x-github-event": "push",
        "content-type": "application/json",
    }


# How long a test client waits for an answer. It bounds a hang and is no performance threshold:
# on this shared machine a synced commit has stalled past httpx's 5 s default.
CLIENT_TIMEOUT = 30.0

# How long a test waits for something that must happen (a delivery, a status, a server start).
# It bounds a hang; a passing test never waits it out.
DEADLINE = 60.0


def until_deadline(timeout: float = DEADLINE) -> Iterator[None]:
    """Iterations of a polling loop (`for _ in until_deadline():`, break when done) until
    `timeout` seconds have passed: it bounds a hang, it is no count of tries to beat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield


def api_client(url: str, token: str) -> httpx.AsyncClient:
    """A client of Hookyard's API carrying `token`."""
    return httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=CLIENT_TIMEOUT
    )


# The machine's PostgreSQL (trust auth on loopback); each test gets a schema of its own.
POSTGRES_URL = os.environ.get("HOOKYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _create_schema() -> str:
    schema = f"hy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema


def _drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")  # fail loudly rather than hang on a leak
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _schema_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database URL whose search_path is a new, empty schema, dropped afterwards."""
    schema = _create_schema()
    yield _schema_url(schema)
    _drop_schema(schema)


@pytest.fixture
def fresh_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call to give the next server a database of its own. SQLite servers have one per config
    directory already; on PostgreSQL runs this points HOOKYARD_SERVER__DATABASE at a new
    schema."""
    created: list[str] = []

    def switch() -> None:
        if "HOOKYARD_SERVER__DATABASE" in os.environ:
            created.append(_create_schema())
            monkeypatch.setenv("HOOKYARD_SERVER__DATABASE", _schema_url(created[-1]))

    yield switch
    for schema in created:
        _drop_schema(schema)


def query_database(base_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run a read query as another process would, on a fresh connection to the test's database
    (PostgreSQL when the backend fixture chose it, else base_dir/hookyard.db)."""
    url = os.environ.get("HOOKYARD_SERVER__DATABASE")
    if url:
        with psycopg.connect(url) as pg:
            if not params:  # psycopg would read a LIKE pattern's % as a placeholder
                return pg.execute(sql).fetchall()
            return pg.execute(sql.replace("?", "%s"), params).fetchall()
    conn = sqlite3.connect(f"file:{base_dir / 'hookyard.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


DROP = object()  # a receiver behaviour's answer meaning "close the connection, say nothing"


@dataclass
class Received:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float
    path: str = ""


@dataclass
class Receiver:
    """A real HTTP server on loopback that records what it receives and answers as told."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Called for each request; returns (status, headers) or raises to drop the connection.
    behaviour: Callable[[Received], Any] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def ids(self) -> list[str]:
        return [r.headers.get("webhook-id", "") for r in self.received]

    async def wait_for(self, count: int, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"receiver got {len(self.received)} of {count} requests")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()

    async def handle(request: web.Request) -> web.StreamResponse:
        item = Received(
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            time.time(),
            request.path,
        )
        recorder.received.append(item)
        recorder.arrived.set()
        result = recorder.behaviour(item) if recorder.behaviour else 204
        if asyncio.iscoroutine(result):
            result = await result
        if result is DROP:
            assert request.transport is not None
            request.transport.close()  # an abrupt close: no status line at all
            return web.Response()
        if isinstance(result, web.StreamResponse):
            return result
        status, headers = (result, {}) if isinstance(result, int) else result
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}/hooks"
    yield recorder
    await runner.cleanup()


@contextlib.asynccontextmanager
async def local_api(*routes: tuple[str, Callable[[web.Request], Any]]) -> AsyncIterator[str]:
    """A small HTTP API of a test's own on a loopback port, for what the simulator will not
    do: GET `path` answered by `handler`, for each (path, handler); yields its base URL."""
    app = web.Application()
    for path, handler in routes:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def write_config(directory: Path, body: str) -> Path:
    path = directory / "hookyard.toml"
    path.write_text(textwrap.dedent(body))
    return path


def basic_config(receiver_url: str, extra: str = "", destination: str = "") -> str:
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [egress]
        allow = ["127.0.0.0/8"]

        [sources.github]
        verify = "github"
        secrets = ["{GITHUB_SECRET}"]

        [sources.open]
        verify = "none"

        [destinations.app]
        url = "{receiver_url}"
        secret = "{DEST_SECRET}"
        timeout = "2s"
        retry_schedule = ["0", "100ms", "100ms"]
        jitter = 0
        {destination}

        [[routes]]
        source = "github"
        destination = "app"

        [[routes]]
        source = "open"
        destination = "app"
        {extra}
    """


@dataclass
class Running:
    """Hookyard served by uvicorn in this event loop, on a real loopback port."""

    service: Service
    url: str
    token: str
    client: httpx.AsyncClient

    def api(self) -> httpx.AsyncClient:
        return api_client(self.url, self.token)


@contextlib.asynccontextmanager
async def run_hookyard(config: Path) -> AsyncIterator[Running]:
    settings, base_dir = load_config(config)
    service = Service(settings, base_dir, config_path=config)
    state = await service.start()
    server = uvicorn.Server(http_config(state, settings, base_dir, "127.0.0.1", 0))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    token = read_token_file(base_dir / settings.server.token_file) or ""
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        try:
            yield Running(service, url, token, client)
        finally:
            server.should_exit = True
            await task
            await service.stop()


@pytest.fixture
def hookyard_factory(tmp_path: Path) -> Callable[[str], Any]:
    def factory(body: str) -> Any:
        return run_hookyard(write_config(tmp_path, body))

    return factory


# -- a `hookyard serve` subprocess, for crash and signal tests ----------------------------------


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_serve(config: Path, *args: str, timeout: float = DEADLINE) -> ServeProcess:
    log_path = config.parent / f"serve-{time.monotonic_ns()}.log"
    with log_path.open("wb") as handle:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookyard", "serve", "--config", str(config), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"listening on (https?://\S+)", log_path.read_text(errors="replace"))
        if match:
            return ServeProcess(proc, match.group(1), log_path)
        if proc.poll() is not None:
            raise AssertionError(f"hookyard serve exited: {log_path.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"hookyard serve did not start: {log_path.read_text()}")


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()
