"""Replay real 12345 work orders through the queue and print the work report.

Reads data/cases/haikou12345_env_dev.csv at run time (never copied), gives each order a synthetic time over four
weeks (2026-11-01 … 2026-11-28; the file's repeated orders a few hours to days after their first call), and
drives the service functions as dispatchers and units would: intake with a fake triager that answers with the
file's own labels (so the run measures the queue, not the classifier), accept or override, returns and
re-assignments, extensions, replies from the file where there is one, closures, reopenings, merges of flagged
duplicates. Then prints ``build_report`` for the period, and a run summary on stderr.

Usage: python bench/replay_report.py [CSV] [--seed N] [--database sqlite:///path.db]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, and bench/triage.py would shadow the triage package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import csv
import heapq
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from triage.classify.types import Suggestion
from triage.db import create_all, make_engine, session_factory
from triage.queue import service
from triage.queue.models import Complaint
from triage.queue.service import DomainError, default_unit_name
from triage.report import build_report

BJ = ZoneInfo("Asia/Shanghai")
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "cases" / "haikou12345_env_dev.csv"
START, END = date(2026, 11, 1), date(2026, 11, 28)
AS_OF = datetime(2026, 11, 28, 18, 0, tzinfo=BJ).astimezone(UTC)


class LabelTriager:
    """Answers with the labels the file gives the text (the classifier is benchmarked elsewhere)."""

    def __init__(self, rows: list[dict[str, str]], rng: random.Random):
        self.by_text = {r["text"].strip(): r for r in rows}
        self.rng = rng

    def suggest(self, text: str, *, occurred_at=None, address=None) -> Suggestion:
        r = self.by_text[text.strip()]
        pt = r["pollution_type"] or "not_environmental"
        st = r["subtype"] or ("" if pt == "not_environmental" else f"{pt}.other")
        ut = r["unit_type"] or "other"
        conf = round(self.rng.uniform(0.45, 0.98), 2)
        return Suggestion(pollution_type=pt, subtype=st, unit_type=ut, unit_name=r["unit_raw"] or default_unit_name(ut),
                          confidence=conf, unit_confidence=round(self.rng.uniform(0.4, 0.95), 2),
                          low_confidence=conf < 0.6, unit_decided_by="replayed label",
                          versions={"model": "replay-labels"})


def bj_time(d: date, hour: float) -> datetime:
    return (datetime(d.year, d.month, d.day, tzinfo=BJ) + timedelta(hours=hour)).astimezone(UTC)


def synthetic_times(rows: list[dict[str, str]], rng: random.Random) -> list[datetime]:
    """Calls spread over the period (more in the daytime), repeats shortly after the order they repeat."""
    days = (END - START).days + 1
    times: list[datetime | None] = [None] * len(rows)
    index = {r["order_id"]: i for i, r in enumerate(rows)}
    for i, r in enumerate(rows):
        if r["duplicate_of"] and r["duplicate_of"] in index:
            continue
        d = START + timedelta(days=rng.randrange(days))
        hour = rng.choice([rng.uniform(8, 22), rng.uniform(8, 22), rng.uniform(0, 24)])
        times[i] = bj_time(d, hour)
    for i, r in enumerate(rows):
        if times[i] is None:
            parent = times[index[r["duplicate_of"]]] or bj_time(START, 9)
            times[i] = min(parent + timedelta(hours=rng.uniform(2, 72)), bj_time(END, 23.5))
    return times  # type: ignore[return-value]


def replay(csv_path: Path, seed: int, database: str | None) -> tuple[str, dict[str, int]]:
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    rng = random.Random(seed)
    times = synthetic_times(rows, rng)
    url = database or f"sqlite:///{Path(tempfile.mkdtemp(prefix='replay-')) / 'replay.db'}"
    engine = make_engine(url)
    create_all(engine)
    session = session_factory(engine)()
    triager = LabelTriager(rows, rng)
    stats = {k: 0 for k in ("intake", "flagged_duplicate", "merged", "relapse", "assign", "override", "return",
                            "reassign", "extend", "close", "reopen", "refused", "open_at_end")}
    learned: list[dict] = []
    queue: list[tuple[datetime, int, str, int]] = []
    seq = 0

    def later(when: datetime, action: str, idx: int) -> None:
        nonlocal seq
        if when <= AS_OF:
            seq += 1
            heapq.heappush(queue, (when, seq, action, idx))

    for i, t in enumerate(times):
        later(t, "intake", i)
    cid: dict[int, int] = {}
    reply_of = {i: (r["reply"].strip() or "") for i, r in enumerate(rows)}

    def close_reply(i: int) -> str:
        if reply_of[i]:
            return reply_of[i]
        r = rows[i]
        if r["pollution_type"] == "not_environmental":
            return "您好！您反映的问题不属于生态环境类诉求，已转交相关职能部门办理，感谢您的来电。"
        return "您好！您反映的问题，我单位已派员到现场核查，已责令当事人立即整改，并将加强日常巡查。感谢您对环境保护工作的支持。"

    while queue:
        now, _, action, i = heapq.heappop(queue)
        try:
            if action == "intake":
                c = service.intake(session, text=rows[i]["text"], source="replay", external_id=f"replay-{i}",
                                   triager=triager, now=now)
                cid[i] = c.id
                stats["intake"] += 1
                stats["relapse"] += c.relapse_of is not None
                if c.duplicate_of is not None:
                    stats["flagged_duplicate"] += 1
                    if rng.random() < 0.9:
                        later(now + timedelta(minutes=rng.uniform(20, 240)), "merge", i)
                        continue
                later(now + timedelta(hours=rng.uniform(0.3, 16)), "assign", i)
            elif action == "merge":
                c = session.get(Complaint, cid[i])
                try:
                    service.merge(session, complaint_id=c.id, parent_id=c.duplicate_of, actor="调度员", now=now)
                    session.commit()
                    stats["merged"] += 1
                except DomainError:
                    session.rollback()
                    later(now + timedelta(hours=1), "assign", i)  # parent already closed: handle it on its own
            elif action in ("assign", "reassign"):
                override = None
                if action == "reassign":
                    override = rng.choice(["street_town", "ecology_environment", "urban_management"])
                elif rng.random() < 0.06:
                    override = rng.choice(["street_town", "ecology_environment"])
                a = service.assign(session, complaint_id=cid[i], actor="调度员", unit_type=override,
                                   unit_namer=default_unit_name, now=now)
                session.commit()
                stats["reassign" if action == "reassign" else "assign"] += 1
                stats["override"] += not a.accepted_suggestion
                u = rng.random()
                if action == "assign" and u < 0.08:
                    later(now + timedelta(hours=rng.uniform(4, 48)), "return", i)
                    continue
                if u < 0.14:
                    later(now + timedelta(days=rng.uniform(2, 4)), "extend", i)
                # most within the deadline, a tail after it
                days = rng.choice([rng.uniform(0.5, 6), rng.uniform(0.5, 6), rng.uniform(0.5, 6), rng.uniform(4, 12)])
                later(now + timedelta(days=days), "close", i)
            elif action == "return":
                service.return_(session, complaint_id=cid[i], actor="承办单位",
                                reason=rng.choice(["不属于本单位职责", "地址不详，无法核查", "应由属地街道处理"]), now=now)
                session.commit()
                stats["return"] += 1
                later(now + timedelta(hours=rng.uniform(1, 20)), "reassign", i)
            elif action == "extend":
                service.extend(session, complaint_id=cid[i], actor="承办单位", reason="需要协调多个部门联合核查",
                               working_days=rng.choice([2, 3, 5]), now=now)
                session.commit()
                stats["extend"] += 1
            elif action == "close":
                r = rng.random()
                result = "属实" if r < 0.6 else ("部分属实" if r < 0.85 else "不属实")
                service.close(session, complaint_id=cid[i], actor="调度员", reply=close_reply(i), result=result,
                              case_sink=learned.append, now=now)
                session.commit()
                stats["close"] += 1
                if rng.random() < 0.04:
                    later(now + timedelta(days=rng.uniform(2, 10)), "reopen", i)
            elif action == "reopen":
                service.reopen(session, complaint_id=cid[i], actor="调度员", reason="市民回访不满意，问题依旧", now=now)
                session.commit()
                stats["reopen"] += 1
                later(now + timedelta(days=rng.uniform(1, 6)), "close", i)
        except DomainError:
            session.rollback()
            stats["refused"] += 1  # e.g. an extension after the case was already closed
    stats["open_at_end"] = sum(1 for c in session.query(Complaint).all() if c.status not in ("closed", "merged"))
    stats["cases_learned"] = len(learned)
    report = build_report(session, START, END, as_of=AS_OF)
    session.close()
    engine.dispose()
    return report, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--database", default=None, help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    if not args.csv.exists():
        sys.exit(f"{args.csv} not found (the shared data folder is read at run time)")
    t0 = time.perf_counter()
    report, stats = replay(args.csv, args.seed, args.database)
    print(report)
    print(f"replayed {stats['intake']} orders in {time.perf_counter() - t0:.1f}s: {stats}", file=sys.stderr)


if __name__ == "__main__":
    main()
