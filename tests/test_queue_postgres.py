"""The queue on PostgreSQL (127.0.0.1:5432, database ``test``, trust auth): row locks, time zones, and the
API lifecycle and metrics suites re-run against it. Each test gets its own schema, built by the Alembic
migrations; skipped when unreachable."""

from __future__ import annotations

import uuid

import pytest
from conftest import bj
from postgres_support import PG, reachable
from race_support import race_two_assigns
from sqlalchemy import func, select, text

from triage.settings import Settings

pytestmark = pytest.mark.postgres

if not reachable():
    pytest.skip("PostgreSQL is not reachable (127.0.0.1:5432 or TRIAGE_TEST_POSTGRES)", allow_module_level=True)


@pytest.fixture
def settings(tmp_path):
    """Overrides conftest's SQLite settings: a fresh schema per test, dropped afterwards."""
    from sqlalchemy import create_engine

    schema = f"queue_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    from triage.db import _engine_for
    from triage.migrate import upgrade

    upgrade(_engine_for(url))  # PostgreSQL gets its schema from the migrations, as in production
    yield Settings(data_dir=tmp_path, database_url=url)

    _engine_for.cache_clear()  # close pools that point at the schema
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# The API lifecycle and the metrics batch, on PostgreSQL (same tests, this module's ``settings``).
from test_metrics import batch, test_metrics_figures  # noqa: E402, F401
from test_queue_api import (  # noqa: E402, F401
    test_illegal_transitions_409_and_nothing_changes,
    test_lifecycle_intake_accept_draft_close,
    test_merge_duplicates_and_children_close_with_parent,
    test_relapse_listed,
)


def test_times_come_back_aware_utc(session, triager):
    from triage.queue import service
    from triage.queue.models import Complaint

    c = service.intake(session, text="市民来电反映：石潭路88号烧烤店油烟直排。", triager=triager,
                       now=bj(2026, 11, 2, 9, 30))
    session.expire_all()
    c = session.get(Complaint, c.id)
    assert c.received_at == bj(2026, 11, 2, 9, 30) and c.received_at.utcoffset().total_seconds() == 0


def test_for_update_one_assignment_wins(engine, session, triager, monkeypatch):
    from triage.db import session_factory
    from triage.queue import service
    from triage.queue.models import Assignment, Complaint

    now = bj(2026, 11, 2, 9)
    cid = service.intake(session, text="市民来电反映：石潭路88号烧烤店油烟直排。", triager=triager, now=now).id
    session.close()
    results = race_two_assigns(engine, monkeypatch, complaint_id=cid, now=now, barrier_timeout=1)
    factory = session_factory(engine)
    assert sorted(results.values())[1] == "ok" and list(results.values()).count("ok") == 1
    with factory() as s:
        assert s.get(Complaint, cid).status == "assigned"
        assert s.scalar(select(func.count()).select_from(Assignment).where(Assignment.complaint_id == cid)) == 1


def test_demo_clear_on_postgresql(session, settings, triager):
    """The demo set goes with its suggestions, assignments and trail; a real complaint merged into a demo one
    stays, unlinked and back in the queue (foreign keys are enforced here, unlike SQLite's default)."""
    from triage.queue import service
    from triage.queue.models import Assignment, Complaint, Event, Suggestion
    from triage.web.demo import clear_demo

    now = bj(2026, 11, 2, 9, 30)
    demo = service.intake(session, text="市民来电反映：石潭路88号烧烤店油烟直排。", triager=triager, source="demo",
                          now=now)
    service.assign(session, complaint_id=demo.id, actor="演示数据", now=now)
    session.commit()
    real = service.intake(session, text="市民来电反映：石潭路88号烧烤店油烟直排，请处理。", triager=triager, now=now)
    service.merge(session, complaint_id=real.id, parent_id=demo.id, actor="调度", now=now)
    session.commit()
    assert clear_demo(session, settings) == 1
    session.expire_all()
    assert session.scalars(select(Complaint.id)).all() == [real.id]
    back = session.get(Complaint, real.id)
    assert back.merged_into is None and back.status == "triaged"  # in the dispatcher's queue again
    assert session.scalar(select(func.count()).select_from(Assignment)) == 0
    assert session.scalar(select(func.count()).select_from(Suggestion).where(Suggestion.complaint_id == demo.id)) == 0
    assert "demo_link_removed" in session.scalars(select(Event.kind).where(Event.complaint_id == real.id)).all()
