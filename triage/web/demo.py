"""First start: a small demo set so a new user sees a populated queue (``knowledge/demo/complaints.yaml``).

``load_demo_if_empty(app)`` runs each demo complaint through the normal intake (the app's triager, duplicate and
relapse detection), then replays the follow-up the file describes (accept, return, close) through the same
service functions, with times in the past so deadlines, overdue items and the weekly trend look like a
working office. Demo complaints carry ``source="demo"`` and external ids ``DEMO-…`` (a second process loading
at the same time skips the ids already stored). Closing a demo complaint hands nothing to the knowledge base.

Before going live, ``triage demo clear`` (``clear_demo``) deletes the demo complaints with their suggestions,
assignments, drafts and audit events, so that they stop counting in the metrics and the report; a marker file in
the data directory keeps the set from being loaded again into the now empty database.

The pages call ``ensure_demo(app)``: the first page view starts the load in a background thread (the triager may
have to load its model) and the queue shows a notice until it is done; startup is never blocked.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import or_, select

from triage.queue import service
from triage.queue.models import DEMO_SOURCE, Complaint, Event, Status
from triage.queue.sla import TZ, local_date
from triage.settings import DEFAULT_KNOWLEDGE_DIR

log = logging.getLogger(__name__)

DEMO_ACTOR = "演示数据"
CLEARED_MARKER = ".demo-cleared"
_lock = threading.Lock()


def cleared_marker(settings) -> Path:
    return Path(settings.data_dir) / CLEARED_MARKER


def clear_demo(session, settings) -> int:
    """Delete every demo complaint and what hangs on it; returns how many. Real complaints keep their history:
    a link of theirs to a demo complaint (duplicate, merge, relapse) is removed and the removal is audited."""
    demo = session.scalars(select(Complaint).where(Complaint.source == DEMO_SOURCE)).all()
    ids = {c.id for c in demo}
    if ids:
        linked = session.scalars(select(Complaint).where(
            Complaint.source != DEMO_SOURCE,
            or_(Complaint.duplicate_of.in_(ids), Complaint.merged_into.in_(ids), Complaint.relapse_of.in_(ids)))).all()
        for c in linked:
            dropped = [name for name in ("duplicate_of", "merged_into", "relapse_of") if getattr(c, name) in ids]
            for name in dropped:
                setattr(c, name, None)
            before = c.status
            if c.status == Status.merged.value and "merged_into" in dropped:
                # Merged into a demo complaint that will never close: back to the dispatcher's queue.
                c.status = (Status.triaged if c.suggestions else Status.received).value
            session.add(Event(complaint_id=c.id, kind="demo_link_removed", actor="triage demo clear",
                              at=datetime.now(UTC), from_status=before, to_status=c.status,
                              reason="关联的演示数据已清除", data={"removed": dropped}))
        for c in demo:  # links inside the demo set go first, so the rows can go in any order
            c.duplicate_of = c.merged_into = c.relapse_of = None
        session.flush()
        for c in demo:
            session.delete(c)
    session.commit()
    marker = cleared_marker(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"demo data cleared: {len(ids)} complaints\n", encoding="utf-8")
    return len(ids)


def demo_file(settings) -> Path:
    path = Path(settings.knowledge_dir) / "demo" / "complaints.yaml"
    if not path.exists():  # a test's knowledge dir without demo data uses the project's
        path = DEFAULT_KNOWLEDGE_DIR / "demo" / "complaints.yaml"
    return path


def _at(today, days_ago: int, hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(today - timedelta(days=days_ago), time(h, m), tzinfo=TZ).astimezone(UTC)


def _occurred(received: datetime, spec: str | None) -> datetime | None:
    if not spec:
        return None
    spec = str(spec).strip()
    shift = 0
    if spec.startswith("-1 "):
        shift, spec = -1, spec[3:]
    day = local_date(received) + timedelta(days=shift)
    h, m = (int(x) for x in spec.split(":"))
    return min(datetime.combine(day, time(h, m), tzinfo=TZ).astimezone(UTC), received)


def read_demo(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(data.get("complaints") or [])


def _clean(text: str) -> str:
    """YAML folds long lines with spaces; Chinese text has none."""
    return re.sub(r"\s+", "", str(text))


def _has_complaints(session) -> bool:
    return session.scalar(select(Complaint.id).limit(1)) is not None


def load_demo_if_empty(app) -> int:
    """Load the demo set when ``settings.demo_data`` is on and there are no complaints; returns how many."""
    from triage.api.deps import get_now, get_sla_dep, get_triager, get_unit_namer, resolve

    settings = app.state.settings
    if not settings.demo_data or cleared_marker(settings).exists():
        return 0
    with _lock:
        with app.state.session_factory() as session:
            if _has_complaints(session):
                return 0
        items = read_demo(demo_file(settings))
        now = resolve(app, get_now)
        triager = resolve(app, get_triager)
        sla = resolve(app, get_sla_dep)
        namer = resolve(app, get_unit_namer)
        today = local_date(now)
        plan = []
        for item in items:
            received = min(_at(today, int(item.get("days_ago", 0)), str(item.get("time", "09:00"))),
                           now - timedelta(minutes=5))
            plan.append((received, item))
        plan.sort(key=lambda p: p[0])
        loaded = 0
        with app.state.session_factory() as session:
            for received, item in plan:
                try:
                    c = service.intake(session, text=_clean(item["text"]), address=item.get("address"),
                                       occurred_at=_occurred(received, item.get("occurred")), source=DEMO_SOURCE,
                                       external_id=item.get("id"), triager=triager, actor=DEMO_ACTOR,
                                       now=received, sla=sla)
                except service.DuplicateExternalId:
                    continue  # another process is loading the same set
                except service.DomainError as exc:
                    log.warning("demo complaint %s not loaded: %s", item.get("id"), exc.message)
                    continue
                loaded += 1
                _follow_up(session, c.id, item, received=received, now=now, sla=sla, namer=namer)
        log.info("demo data: %d complaints loaded", loaded)
        return loaded


def _follow_up(session, cid: int, item: dict[str, Any], *, received: datetime, now: datetime, sla, namer) -> None:
    """Replay what the file says happened next; a step the state does not allow is skipped (and logged)."""
    steps = []
    if item.get("assign"):
        steps.append(("assign", received + timedelta(minutes=30)))
    if item.get("return"):
        steps.append(("return", received + timedelta(days=1)))
    close = item.get("close")
    if close:
        steps.append(("close", received + timedelta(days=int(close.get("days_after", 1)), hours=2)))
    for step, at in steps:
        at = min(at, now - timedelta(minutes=1))
        try:
            if step == "assign":
                service.assign(session, complaint_id=cid, actor=DEMO_ACTOR, unit_namer=namer, now=at, sla=sla)
            elif step == "return":
                service.return_(session, complaint_id=cid, actor=DEMO_ACTOR, reason=_clean(item["return"]), now=at)
            else:
                service.close(session, complaint_id=cid, actor=DEMO_ACTOR, reply=_clean(close["reply"]),
                              result=str(close["result"]), case_sink=None, now=at)
            session.commit()
        except service.DomainError as exc:
            session.rollback()
            log.warning("demo complaint %s: %s skipped: %s", cid, step, exc.message)
            return


def ensure_demo(app) -> str:
    """Called on page views: "off", "loading" or "done". Starts the background load at most once."""
    state = getattr(app.state, "web_demo", None)
    if state in ("done", "off"):
        return state
    if state == "loading":
        thread = getattr(app.state, "web_demo_thread", None)
        if thread is not None and thread.is_alive():
            return "loading"
        app.state.web_demo = "done"
        return "done"
    if not app.state.settings.demo_data or cleared_marker(app.state.settings).exists():
        # After `triage demo clear` the first page view showed 正在载入演示数据 (the loader then found the marker).
        app.state.web_demo = "off"
        return "off"
    with app.state.session_factory() as session:
        if _has_complaints(session):
            app.state.web_demo = "done"
            return "done"

    def run() -> None:
        try:
            load_demo_if_empty(app)
        except Exception:  # noqa: BLE001 - a failed demo load must not break the pages
            log.exception("loading the demo data failed")

    with _lock:
        if getattr(app.state, "web_demo", None) is None:
            app.state.web_demo = "loading"
            thread = threading.Thread(target=run, name="triage-demo-load", daemon=True)
            app.state.web_demo_thread = thread
            thread.start()
    return app.state.web_demo
