"""Schema migrations (Alembic, ``migrations/``) and the one rule for how a database gets its schema.

* ``triage db upgrade`` (and ``triage init`` / ``triage serve``) bring any database to the newest revision.
* The app (``create_app``) migrates SQLite by itself — the embedded single-laptop setup needs no extra step —
  but only *checks* other databases: on PostgreSQL a deployment runs ``triage db upgrade`` once, before it
  starts (or restarts) its web workers, so several workers never race to alter the schema. Set
  ``TRIAGE_AUTO_MIGRATE=true`` to let the app migrate PostgreSQL as well.
* A fresh SQLite database is created from the models and stamped with the head revision (fast: the test suite
  makes hundreds); ``tests/test_migrations.py`` proves the migrations produce exactly that schema.
* A database made by ``create_all`` before migrations existed is adopted: stamped with the baseline revision
  (``0001``, the schema as it was then), then upgraded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

from triage.settings import RESOURCE_ROOT

MIGRATIONS_DIR = RESOURCE_ROOT / "migrations"
BASELINE = "0001"  # the schema that create_all made before migrations existed


class SchemaError(RuntimeError):
    """The database schema is not at the revision this code needs (message says what to run)."""


def target_metadata() -> MetaData:
    import triage.auth.models  # noqa: F401 - registers the tables on Base.metadata
    import triage.queue.models  # noqa: F401
    from triage.db import Base

    return Base.metadata


def render_item(type_: str, obj: Any, autogen_context) -> str | bool:
    """Autogenerate: write our UTC column type as the plain type it stores (migrations must not import models)."""
    from triage.queue.models import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config

    ini = RESOURCE_ROOT / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return _script().get_current_head()


def current_revision(bind: Engine | Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return MigrationContext.configure(bind).get_current_revision()


def schema_state(bind: Engine | Connection) -> str:
    """fresh (no tables) | legacy (tables, never stamped) | current | behind | unknown (newer than this code)."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return schema_state(conn)
    insp = inspect(bind)
    if not insp.has_table("alembic_version"):
        return "legacy" if insp.has_table("complaints") else "fresh"
    rev = current_revision(bind)
    if rev is None:
        return "legacy" if insp.has_table("complaints") else "fresh"
    if rev == head_revision():
        return "current"
    try:
        _script().get_revision(rev)
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        return "unknown"
    return "behind"


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the migrations up to ``revision`` in one transaction; returns (before, after)."""
    from alembic import command

    with engine.begin() as conn:
        insp = inspect(conn)
        if not insp.has_table("alembic_version") and insp.has_table("complaints"):
            command.stamp(alembic_config(conn), BASELINE)  # adopt a database made by create_all
        before = current_revision(conn)
        command.upgrade(alembic_config(conn), revision)
        after = current_revision(conn)
    return before, after


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def stamp_head(conn: Connection) -> None:
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn).stamp(_script(), "head")


def ensure_schema(engine: Engine, *, migrate: bool = True) -> str:
    """Bring the schema to the head revision (``migrate``), or only check it. Returns the state found.

    Raises SchemaError when the schema is not current and may not be migrated here, or is newer than the code.
    """
    state = schema_state(engine)
    if state == "current":
        return state
    if state == "unknown":
        raise SchemaError(
            f"数据库结构版本 {current_revision(engine)} 比本程序新，请升级程序 / the database is at a revision this "
            f"code does not know (head here: {head_revision()}); deploy the newer code")
    if not migrate:
        raise SchemaError(
            f"数据库结构不是最新（{state}），请先运行 `triage db upgrade` / the database schema is {state}, "
            f"not at {head_revision()}: run `triage db upgrade` first (or set TRIAGE_AUTO_MIGRATE=true)")
    if state == "fresh" and engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            target_metadata().create_all(conn)
            stamp_head(conn)
        return state
    upgrade(engine)
    return state


def check_no_diff(engine: Engine) -> list[Any]:
    """Autogenerate's comparison of the live schema with the models: [] when the migrations are complete."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, target_metadata())
