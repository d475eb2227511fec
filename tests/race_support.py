"""Two dispatchers assigning the same complaint at once, each in its own session and thread."""

from __future__ import annotations

import threading

from triage.db import session_factory
from triage.queue import service


def race_two_assigns(engine, monkeypatch, *, complaint_id: int, now, barrier_timeout: float) -> dict[str, str]:
    """Run 甲 and 乙 assigning ``complaint_id`` concurrently; returns {actor: "ok" | error class name}.

    Each holds at a barrier right after locking the row, so both have read the complaint before either writes
    (on PostgreSQL the second is blocked inside FOR UPDATE and the first times out at the barrier)."""
    barrier = threading.Barrier(2)
    real_lock = service._lock

    def lock_then_wait(s, cid):
        c = real_lock(s, cid)
        try:
            barrier.wait(timeout=barrier_timeout)
        except threading.BrokenBarrierError:
            pass
        return c

    monkeypatch.setattr(service, "_lock", lock_then_wait)
    results: dict[str, str] = {}
    factory = session_factory(engine)

    def worker(name, unit):
        with factory() as s:
            try:
                service.assign(s, complaint_id=complaint_id, actor=name, unit_type=unit, now=now)
                s.commit()
                results[name] = "ok"
            except service.IllegalTransition as exc:
                s.rollback()
                results[name] = type(exc).__name__

    threads = [threading.Thread(target=worker, args=(n, u))
               for n, u in (("甲", "urban_management"), ("乙", "ecology_environment"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results
