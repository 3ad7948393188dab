"""Every integration test runs on both backends (SQLite, and PostgreSQL through the
`HOOKYARD_SERVER__DATABASE` override that in-process and subprocess servers alike read), except
those marked `sqlite_only` (they inspect the SQLite file itself)."""

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
    """Tests marked sqlite_only run on SQLite alone."""
    keep, drop = [], []
    for item in items:
        on_postgres = "[postgresql" in item.name
        (drop if on_postgres and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
