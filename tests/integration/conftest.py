"""Every integration test runs on both backends (SQLite, and PostgreSQL through the
`HOOKYARD_SERVER__DATABASE` override that in-process and subprocess servers alike read), except
those marked `sqlite_only` (they inspect the SQLite file itself) or `postgres_only` (several
processes sharing one database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("HOOKYARD_SERVER__DATABASE", url)
    yield request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked sqlite_only run on SQLite alone, postgres_only on PostgreSQL alone."""
    keep, drop = [], []
    for item in items:
        only = "postgres_only" if "[sqlite" in item.name else "sqlite_only"
        (drop if item.get_closest_marker(only) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
