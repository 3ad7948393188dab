"""Helpers shared by the ingest and delivery benchmarks: paths, bodies, processes, the sink,
and the databases the servers write (SQLite files, fresh PostgreSQL schemas)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = ROOT / ".venv" / "bin"
RESULTS = BENCH / "results"  # git-ignored; also holds the scratch directory during a run
BODY_SIZE = 1024
UVICORN_FLAGS = [
    "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools",
    "--no-access-log", "--log-level", "warning", "--workers", "1",
]  # fmt: skip


def build_body(seq: int, delivery: str) -> bytes:
    """A push-like JSON document of exactly BODY_SIZE bytes with a distinct id."""
    head = (
        f'{{"id":{seq},"delivery":"{delivery}","ref":"refs/heads/main",'
        f'"repository":{{"id":1296269,"full_name":"hookyard/bench","private":false}},'
        f'"pusher":{{"name":"bench","email":"bench@example.com"}},"head_commit":{{"id":"'
        f'{hashlib.sha1(str(seq).encode()).hexdigest()}","message":"'
    )
    tail = '"}}'
    return (head + "x" * (BODY_SIZE - len(head) - len(tail)) + tail).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    argv: list[str], cwd: Path, env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Start a server and wait (at most 30 s) until it accepts connections on `port`."""
    # The previous phase's dirty pages (a baseline's database, a deleted scratch directory)
    # reach the disk first: their writeback would otherwise stall this phase's fsyncs.
    os.sync()
    # A session of its own, so stop() can end the process and any children it forked.
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{argv[0]} not listening on port {port} after 30 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_sink(
    work: Path, log_format: str | None = None
) -> tuple[subprocess.Popen[bytes], int, str]:
    """nginx answering 200 when installed (bench/run tries to install it), else the bare app.

    With `log_format`, nginx writes one line per request in that format to
    `work/sink-access.log` (unbuffered); the uvicorn fallback logs nothing."""
    port = free_port()
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx:
        access = "  access_log off;\n"
        if log_format is not None:
            access = (
                f"  log_format sink '{log_format}';\n  access_log {work}/sink-access.log sink;\n"
            )
        conf = work / "nginx.conf"
        conf.write_text(
            f"daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\n"
            f"error_log {work}/nginx.err warn;\nevents {{ worker_connections 4096; }}\n"
            f"http {{\n{access}  keepalive_requests 1000000;\n"
            f"  client_body_temp_path {work};\n"
            f"  server {{ listen 127.0.0.1:{port}; location / {{ return 200 'ok'; }} }}\n}}\n"
        )
        argv = [nginx, "-p", str(work), "-c", str(conf)]
        return start(argv, work, {}, port, work / "sink.log"), port, "nginx"
    argv = [str(BIN / "uvicorn"), "bare_app:app", "--app-dir", str(BENCH), *UVICORN_FLAGS]
    argv += ["--port", str(port)]
    return start(argv, work, {}, port, work / "sink.log"), port, "uvicorn bare app"


def query(db: Path, sql: str) -> int:
    """One integer from the database, opened read-only (the server keeps writing)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


class Database:
    """Where a benchmarked Hookyard keeps its data: the URL `hookyard serve --database` gets,
    and read-only figures out of it while the servers keep writing."""

    def __init__(self, url: str, path: Path | None = None) -> None:
        self.url = url
        self.path = path  # the SQLite file, None for PostgreSQL
        self._conn: Any = None  # one PostgreSQL connection, kept: a poll every 100 ms

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}", path)

    @property
    def backend(self) -> str:
        return "SQLite" if self.path is not None else "PostgreSQL"

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.path is not None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        if self._conn is None:
            import psycopg  # only when PostgreSQL is benchmarked

            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self._conn.execute("SET default_transaction_read_only = on")
        return list(self._conn.execute(sql).fetchall())

    def value(self, sql: str) -> int:
        """One integer (a count)."""
        return int(self.rows(sql)[0][0] or 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def schema_url(base: str, schema: str) -> str:
    """`base` (postgresql://USER@HOST:PORT/DB) with every session's search_path set to
    `schema`: `?options=-csearch_path%3Dschema`."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[Database]:
    """A fresh, empty schema in the PostgreSQL database at `base`, dropped (with everything
    Hookyard made in it) afterwards; stop the servers using it before leaving the block."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    database = Database(schema_url(base, name))
    try:
        yield database
    finally:
        database.close()
        for attempt in range(10):  # the server may be restarting (a test suite does that)
            try:
                with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"DROP SCHEMA {name} CASCADE")
                break
            except psycopg.OperationalError:
                if attempt == 9:
                    raise
                time.sleep(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> dict[int, float]:
    """CPU time of every process on this machine named `postgres` (the server, its background
    processes and backends, the benchmark's connections and anyone else's), by pid."""
    seconds: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if stat.read_text().split(" (", 1)[1].startswith("postgres)"):
                seconds[int(stat.parent.name)] = cpu_seconds(int(stat.parent.name))
    return seconds


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU time the `postgres` processes alive now used since `before` (postgres_cpu()); a
    process that ended meanwhile took its time with it."""
    return sum(now - before.get(pid, 0.0) for pid, now in postgres_cpu().items())


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    version = " ".join(banner[:2])  # "wrk debian/4.1.0-3+b2"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": version.strip(),
    }
