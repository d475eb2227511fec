"""Alembic environment: the target metadata is every triage model; the URL comes from triage.settings.

``triage.migrate`` hands an open connection in ``config.attributes["connection"]`` (the app, the CLI and the
tests migrate exactly the engine they use); plain ``alembic`` on the command line opens the configured database.
SQLite gets batch mode, so later revisions can alter columns there too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from triage.migrate import render_item, target_metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from triage.settings import get_settings

    return get_settings().resolved_database_url


def _configure(**kw) -> None:
    context.configure(target_metadata=target_metadata(), compare_type=True, render_item=render_item, **kw)


def run_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
               render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
