"""PostgreSQL for tests: 127.0.0.1:5432, database ``test``, trust auth (user postgres). Each user of
``fresh_schema`` gets its own schema, dropped afterwards; tests skip when the server is unreachable."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from functools import lru_cache

import pytest

# TRIAGE_TEST_POSTGRES points the tests elsewhere (e.g. a closed port, to see them skip).
PG = os.environ.get("TRIAGE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@lru_cache(maxsize=1)
def reachable() -> bool:
    try:
        import psycopg

        from sqlalchemy.engine import make_url

        url = make_url(PG)
        with psycopg.connect(host=url.host, port=url.port or 5432, dbname=url.database, user=url.username,
                             password=url.password, connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001
        return False


needs_postgres = pytest.mark.skipif(not reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432")


def schema_url(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """An empty schema; yields its SQLAlchemy URL (search_path set to it)."""
    from sqlalchemy import create_engine, text

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(schema)
    finally:
        from triage.db import _engine_for

        _engine_for.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
