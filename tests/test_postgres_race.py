"""Concurrent claims through a live server: dispatchers assign the same complaint at the same moment, each
over its own HTTP connection to a real uvicorn (loopback), each request on its own database connection.
Exactly one wins (200), every other gets 409, and one assignment is stored. On PostgreSQL (row lock,
``SELECT … FOR UPDATE``) and on SQLite (version counter). tests/test_queue_postgres.py covers the same race one
level down (two sessions in the service)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from conftest import fake_drafter
from postgres_support import fresh_schema, reachable
from sqlalchemy import func, select

from triage.queue.models import Assignment, Complaint, Event
from triage.settings import Settings

UNITS = ["urban_management", "ecology_environment", "public_security", "market_regulation", "street_town",
         "water_affairs", "sanitation", "housing_construction"]
TEXTS = ["楼下烧烤店油烟直排", "工地夜间施工噪音", "河涌污水直排", "小区垃圾没人清运", "路边焚烧垃圾", "KTV音响太吵"]


@pytest.fixture(params=["postgres", "sqlite"])
def live(request, tmp_path, triager):
    from triage.api import deps
    from triage.api.app import create_app

    if request.param == "postgres" and not reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_schema("race") if request.param == "postgres" else _nullctx(f"sqlite:///{tmp_path / 'r.db'}") as url:
        settings = Settings(data_dir=tmp_path, database_url=url, auto_migrate=True)
        app = create_app(settings, retry_on_startup=False)
        app.dependency_overrides[deps.get_triager] = lambda: triager
        app.dependency_overrides[deps.get_drafter] = lambda: fake_drafter
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        try:
            yield app, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            app.state.engine.dispose()


class _nullctx:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def test_simultaneous_assigns_exactly_one_wins(live):
    app, base = live
    with httpx.Client(base_url=base, timeout=30) as c:
        ids = [c.post("/api/complaints", json={"text": t}).json()["id"] for t in TEXTS]
    racers = len(UNITS)
    outcome: dict[int, list[tuple[int, str]]] = {cid: [] for cid in ids}
    for cid in ids:
        barrier = threading.Barrier(racers)

        def claim(unit: str, cid=cid, barrier=barrier):
            with httpx.Client(base_url=base, timeout=60) as c:  # its own connection
                c.get("/api/health")  # connect before the barrier: the POSTs leave together
                barrier.wait(timeout=30)
                r = c.post(f"/api/complaints/{cid}/assign", json={"unit_type": unit},
                           headers={"X-Actor": quote(f"派单员-{unit}")})
                outcome[cid].append((r.status_code, unit))

        threads = [threading.Thread(target=claim, args=(u,)) for u in UNITS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)

    with app.state.session_factory() as s:
        for cid, results in outcome.items():
            codes = Counter(code for code, _ in results)
            assert codes == {200: 1, 409: racers - 1}, (cid, results)
            winner = next(unit for code, unit in results if code == 200)
            c = s.get(Complaint, cid)
            assert (c.status, c.unit_type, c.assign_count) == ("assigned", winner, 1)
            assert s.scalar(select(func.count()).select_from(Assignment).where(Assignment.complaint_id == cid)) == 1
            assert s.scalar(select(func.count()).select_from(Event).where(Event.complaint_id == cid,
                                                                         Event.kind == "assign")) == 1
