"""Alembic migrations: they build exactly the models' schema (autogenerate finds no difference) on SQLite and
PostgreSQL, go down and up again, adopt a database made by create_all before migrations existed, and the app
refuses a PostgreSQL schema that is not current unless told to migrate it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from postgres_support import fresh_schema, needs_postgres
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from triage import migrate
from triage.db import make_engine
from triage.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"complaints", "suggestions", "assignments", "reply_drafts", "events", "users", "api_tokens"}


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _roundtrip(engine) -> None:
    assert migrate.schema_state(engine) == "fresh"
    before, after = migrate.upgrade(engine)
    assert (before, after) == (None, migrate.head_revision())
    assert _tables(engine) == TABLES
    assert migrate.check_no_diff(engine) == []  # the migrations are complete: nothing left to autogenerate
    assert migrate.schema_state(engine) == "current"
    migrate.downgrade(engine, "base")
    assert _tables(engine) == set()
    migrate.upgrade(engine)
    assert migrate.check_no_diff(engine) == []


def test_sqlite_migrations_match_models_and_go_down_and_up(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    _roundtrip(engine)
    engine.dispose()


@needs_postgres
def test_postgres_migrations_match_models_and_go_down_and_up():
    with fresh_schema("mig") as url:
        engine = create_engine(url)
        _roundtrip(engine)
        cols = {c["name"]: c for c in inspect(engine).get_columns("complaints")}
        assert cols["received_at"]["type"].timezone  # timestamptz: aware times on PostgreSQL
        engine.dispose()


def test_fast_path_for_fresh_sqlite_is_stamped_head(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    assert migrate.ensure_schema(engine) == "fresh"
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.check_no_diff(engine) == []
    engine.dispose()


def test_legacy_create_all_database_is_adopted_with_its_data(tmp_path):
    """A database made by create_all before migrations existed: stamped 0001, upgraded, rows kept."""
    engine = make_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    # The queue tables as create_all made them then (the baseline's schema), without Alembic's own table.
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    now = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO complaints (text, source, received_at, status, urgency, triage_attempts, "
                          "assign_count, return_count, extension_count, reopen_count, version) VALUES "
                          "('旧库里的投诉', 'api', :t, 'received', 'normal', 0, 0, 0, 0, 0, 1)"), {"t": now})
    assert migrate.schema_state(engine) == "legacy"
    migrate.ensure_schema(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _tables(engine) == TABLES
    with engine.connect() as conn:
        assert conn.execute(text("SELECT text FROM complaints")).scalar_one() == "旧库里的投诉"
    engine.dispose()


def test_newer_database_than_code_is_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    migrate.ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    assert migrate.schema_state(engine) == "unknown"
    with pytest.raises(migrate.SchemaError, match="deploy the newer code"):
        migrate.ensure_schema(engine)
    engine.dispose()


@needs_postgres
def test_app_checks_but_does_not_migrate_postgres(tmp_path):
    from triage.api.app import create_app

    with fresh_schema("app") as url:
        with pytest.raises(migrate.SchemaError, match="triage db upgrade"):
            create_app(Settings(data_dir=tmp_path, database_url=url), retry_on_startup=False)
        app = create_app(Settings(data_dir=tmp_path, database_url=url, auto_migrate=True), retry_on_startup=False)
        assert migrate.schema_state(app.state.engine) == "current"
        migrate.downgrade(app.state.engine, "0001")  # an older deployment's schema
        with pytest.raises(migrate.SchemaError, match="behind"):
            create_app(Settings(data_dir=tmp_path, database_url=url), retry_on_startup=False)


def test_cli_db_upgrade_current_check(tmp_path, monkeypatch):
    from triage.cli import app
    from triage.settings import get_settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(app, ["db", "upgrade"])
        assert r.exit_code == 0, r.output
        assert migrate.head_revision() in r.output
        r = runner.invoke(app, ["db", "upgrade"])
        assert r.exit_code == 0 and "already" in r.output
        r = runner.invoke(app, ["db", "check"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["db", "current"])
        assert "state: current" in r.output
    finally:
        get_settings.cache_clear()


def test_plain_alembic_check_finds_nothing_to_generate(tmp_path):
    """The repository's alembic.ini + migrations/env.py, as a developer would run them."""
    env = {**os.environ, "TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    alembic = [sys.executable, "-m", "alembic"]
    up = subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    check = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def _run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The console script (triage.cli:main) as an operator runs it: exit code and everything printed."""
    from triage.cli import main
    from triage.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setattr(sys, "argv", ["triage", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return code, out.out + out.err


@needs_postgres
def test_the_db_commands_say_what_to_do_instead_of_a_traceback(tmp_path, monkeypatch, capsys):
    """On a fresh PostgreSQL schema `users add` printed a 90-line UndefinedTable traceback, `db check` some fifty
    raw Table(...) objects, and a mistyped revision alembic's CommandError traceback."""
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("pw12345678\n"))
    with fresh_schema("cli") as url:
        monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
        code, out = _run_main(monkeypatch, capsys, "db", "check")
        assert code == 1 and "triage db upgrade" in out and "Table(" not in out
        code, out = _run_main(monkeypatch, capsys, "users", "add", "wang", "--role", "admin", "--password-stdin")
        assert code == 1 and "triage db upgrade" in out and "Traceback" not in out
        code, out = _run_main(monkeypatch, capsys, "db", "upgrade", "9999")
        assert code == 2 and "9999" in out and "Traceback" not in out
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    code, out = _run_main(monkeypatch, capsys, "db", "upgrade")
    assert code == 1 and "无法连接数据库" in out


def test_commands_needing_chroma_say_it_is_down(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRIAGE_CHROMA", f"http://127.0.0.1:{port}")
    f = tmp_path / "one.csv"
    f.write_text("text\n楼下饭店油烟直排\n", encoding="utf-8")
    code, out = _run_main(monkeypatch, capsys, "cases", "import", str(f))
    assert code == 1 and "Chroma" in out and "Traceback" not in out
