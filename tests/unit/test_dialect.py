"""The few places where SQLite and PostgreSQL differ, checked without a database."""

from __future__ import annotations

import pytest

from hookyard.config import redact_url
from hookyard.store.db import POSTGRESQL, SQLITE, to_numbered, to_psycopg


def test_placeholders_become_psycopg_ones() -> None:
    assert to_psycopg("SELECT ? WHERE a LIKE 'x%'", False) == "SELECT %s WHERE a LIKE 'x%%'"
    assert (
        to_psycopg("WHERE d = :destination AND t < :now::float", True)
        == "WHERE d = %(destination)s AND t < %(now)s::float"
    )


def test_positional_placeholders_become_numbered_ones_sent_as_written() -> None:
    assert (
        to_numbered("SELECT ? WHERE a LIKE 'x%' AND b IN (?, ?)")
        == "SELECT $1 WHERE a LIKE 'x%' AND b IN ($2, $3)"
    )
    assert to_numbered("SELECT 1") == "SELECT 1"


@pytest.mark.parametrize(
    ("pattern", "like"),
    [
        ("invoice.*", "invoice.%"),
        ("a?c", "a_c"),
        ("100%_done*", "100\\%\\_done%"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_type_globs_become_escaped_like_patterns(pattern: str, like: str) -> None:
    assert POSTGRESQL.glob_param(pattern) == like
    assert SQLITE.glob_param(pattern) == pattern


def test_field_expressions_name_the_path_in_each_dialect() -> None:
    assert '\'$."data"[0]."id"\'' in SQLITE.field_expression("data.0.id")
    assert POSTGRESQL.field_expression("data.0.id") == "(hookyard_json(payload) #>> '{data,0,id}')"


def test_urls_lose_their_password_in_messages() -> None:
    assert redact_url("postgresql://app:s3cr%40t@db:5432/hy") == "postgresql://app:***@db:5432/hy"
    assert redact_url("postgresql://app@db/hy") == "postgresql://app@db/hy"
    assert redact_url("sqlite:///hookyard.db") == "sqlite:///hookyard.db"
