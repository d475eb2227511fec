"""Closure-rate family (办结率, 按时办结率, 退单率, 重办率 …) over a period; definitions in docs/metrics.md.

The cohort is every complaint *received* in the period (Beijing dates, both ends included), except merged
duplicates, which count once through their parent. Their state is read as it is now (``as_of`` only leaves
out closures after it). Rates are fractions in [0, 1] rounded to 4 places, ``None`` when the denominator is 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from triage.queue.models import DEMO_SOURCE, Complaint, Status
from triage.queue.sla import TZ

UNCLASSIFIED = "unclassified"


MAX_PERIOD_DAYS = 3 * 365 + 1  # a longer period is a mistyped year (2099) and prints thousands of weekly lines


def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """[00:00 of date_from, 00:00 of the day after date_to) in Beijing time, as aware UTC datetimes."""
    from triage.queue.service import InvalidInput

    if date_to < date_from:
        raise InvalidInput(f"开始日期 {date_from} 晚于结束日期 {date_to}（未给出结束日期时为今天） / from {date_from} "
                           f"is after to {date_to} (to defaults to today)")
    if (date_to - date_from).days >= MAX_PERIOD_DAYS:
        raise InvalidInput(f"统计期间最长 {MAX_PERIOD_DAYS // 365} 年（{date_from} 至 {date_to} 过长，可能是日期输错） / "
                           f"a period spans at most {MAX_PERIOD_DAYS} days")
    start = datetime.combine(date_from, time(0), tzinfo=TZ).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=TZ).astimezone(UTC)
    return start, end


def rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


@dataclass
class _Facts:
    """What the metrics need to know about one complaint."""

    c: Complaint
    type: str
    closed: bool
    on_time: bool
    ever_closed: bool
    assigned: bool
    returned: bool
    reopened: bool
    extended: bool
    relapse: bool
    overdue_open: bool
    contact_due: int  # dispatches whose first-contact deadline has come (or that recorded a contact)
    contact_on_time: int  # of those, contacted by the deadline
    contacted: int  # dispatches with a first contact recorded (none: the office does not log contacts)


def _contact_due(a, as_of: datetime) -> bool:
    """A dispatch owes a first contact once its contact deadline has passed while the unit still held it; one
    that recorded a contact counts either way. A dispatch returned or merged before its contact deadline owes
    none."""
    if a.contact_deadline is None:
        return False
    if a.contacted_at is not None and a.contacted_at <= as_of:
        return True
    return a.contact_deadline <= as_of and (a.ended_at is None or a.ended_at > a.contact_deadline)


def _contact_on_time(a, as_of: datetime) -> bool:
    return (a.contact_deadline is not None and a.contacted_at is not None and a.contacted_at <= as_of
            and a.contacted_at <= a.contact_deadline)


def _type_of(c: Complaint, parent: Complaint | None = None) -> str:
    if c.pollution_type:
        return c.pollution_type
    s = c.suggestion
    if s is not None:
        return s.pollution_type
    if parent is not None:
        return _type_of(parent)
    return UNCLASSIFIED


def _facts(c: Complaint, as_of: datetime) -> _Facts:
    closed = c.status == Status.closed.value and c.closed_at is not None and c.closed_at <= as_of
    on_time = closed and (c.deadline is None or c.closed_at <= c.deadline)
    open_ = c.status not in (Status.closed.value, Status.merged.value)
    return _Facts(
        c=c, type=_type_of(c), closed=closed, on_time=on_time,
        ever_closed=c.first_closed_at is not None and c.first_closed_at <= as_of,
        assigned=(c.assign_count or 0) > 0, returned=(c.return_count or 0) > 0,
        reopened=(c.reopen_count or 0) > 0, extended=(c.extension_count or 0) > 0,
        relapse=c.relapse_of is not None,
        overdue_open=open_ and c.deadline is not None and c.deadline < as_of,
        contact_due=sum(_contact_due(a, as_of) for a in c.assignments),
        contact_on_time=sum(_contact_on_time(a, as_of) for a in c.assignments),
        contacted=sum(a.contacted_at is not None and a.contacted_at <= as_of for a in c.assignments))


def _block(fs: list[_Facts]) -> dict[str, Any]:
    received = len(fs)
    closed = sum(f.closed for f in fs)
    on_time = sum(f.on_time for f in fs)
    assigned = sum(f.assigned for f in fs)
    returned = sum(f.returned for f in fs)
    ever_closed = sum(f.ever_closed for f in fs)
    reopened = sum(f.reopened for f in fs)
    extended = sum(f.extended for f in fs)
    return {
        "received": received, "closed": closed, "closure_rate": rate(closed, received),
        "on_time": on_time, "on_time_rate": rate(on_time, closed),
        "assigned": assigned, "returned": returned, "return_rate": rate(returned, assigned),
        "reopened": reopened, "reopen_rate": rate(reopened, ever_closed),
        "extended": extended, "extension_rate": rate(extended, assigned),
        "relapses": sum(f.relapse for f in fs), "overdue_open": sum(f.overdue_open for f in fs),
        "contacted": sum(f.contacted for f in fs), "contact_due": (due := sum(f.contact_due for f in fs)),
        "contact_on_time": (ct := sum(f.contact_on_time for f in fs)), "contact_on_time_rate": rate(ct, due),
    }


def compute_metrics(session: Session, date_from: date, date_to: date, *,
                    as_of: datetime | None = None) -> dict[str, Any]:
    """The figures of ``GET /api/metrics`` for complaints received from ``date_from`` to ``date_to``."""
    start, end = period_bounds(date_from, date_to)
    as_of = as_of or datetime.now(UTC)
    rows = session.scalars(
        select(Complaint).where(Complaint.received_at >= start, Complaint.received_at < end)
        .options(selectinload(Complaint.suggestions), selectinload(Complaint.assignments))
        .order_by(Complaint.received_at, Complaint.id)
    ).all()
    children = [c for c in rows if c.merged_into is not None]
    cohort = [c for c in rows if c.merged_into is None]
    facts = [_facts(c, as_of) for c in cohort]
    parents = {c.id: c for c in rows}
    missing = {c.merged_into for c in children} - set(parents)
    if missing:
        parents.update({p.id: p for p in session.scalars(select(Complaint).where(Complaint.id.in_(missing)))})

    out: dict[str, Any] = {"from": date_from.isoformat(), "to": date_to.isoformat(), "as_of": as_of.isoformat()}
    overall = _block(facts)
    out.update(overall)
    out["duplicates"] = len(children)
    out["duplicates_flagged"] = sum(1 for c in cohort if c.duplicate_of is not None)
    # Demo complaints count like the others (the first-start demo shows a working dashboard); this says how many
    # of the received are fictitious, so no one reports them as the office's work. `triage demo clear` removes them.
    out["demo"] = sum(1 for c in cohort if c.source == DEMO_SOURCE)

    # by type: final label, else the suggestion, else "unclassified"; a duplicate counts under its own type
    # (or its parent's).
    by_type: dict[str, list[_Facts]] = defaultdict(list)
    for f in facts:
        by_type[f.type].append(f)
    dup_by_type: dict[str, int] = defaultdict(int)
    for c in children:
        dup_by_type[_type_of(c, parents.get(c.merged_into))] += 1
    types = sorted(set(by_type) | set(dup_by_type), key=lambda t: (-len(by_type.get(t, [])), t))
    out["by_type"] = [{"pollution_type": t, **_block(by_type.get(t, [])), "duplicates": dup_by_type.get(t, 0)}
                      for t in types]

    # by unit: a complaint counts for every unit it was assigned to ("assigned", "returned" = returned by that
    # unit, "extended" = extended while that unit held it, "reopened" = that unit's closure was reopened);
    # "handled", "closed", "on_time" and "overdue_open" go to the unit that holds it last, judged on the unit's
    # own time: its reply, not the dispatcher's later review.
    units: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for f in facts:
        assignments = f.c.assignments
        if not assignments:
            continue
        seen: set[tuple[str, str]] = set()
        returned_by: set[tuple[str, str]] = set()
        extended_by: set[tuple[str, str]] = set()
        reopened_by: set[tuple[str, str]] = set()
        for a in assignments:
            key = (a.unit_type, a.unit_name)
            seen.add(key)
            units[key]["contact_due"] += _contact_due(a, as_of)
            units[key]["contact_on_time"] += _contact_on_time(a, as_of)
            units[key]["contacted"] += a.contacted_at is not None and a.contacted_at <= as_of
            if a.end_reason == "returned" and (a.ended_at is None or a.ended_at <= as_of):
                returned_by.add(key)
            if (a.extensions or 0) > 0:
                extended_by.add(key)
        for prev, nxt in zip(assignments, assignments[1:]):
            if prev.end_reason == "closed" and nxt.reason == "reopen" and nxt.assigned_at <= as_of:
                reopened_by.add((prev.unit_type, prev.unit_name))
        for key in seen:
            units[key]["assigned"] += 1
        for key in returned_by:
            units[key]["returned"] += 1
        for key in extended_by:
            units[key]["extended"] += 1
        for key in reopened_by:
            units[key]["reopened"] += 1
        last = assignments[-1]
        if f.c.status in (Status.assigned.value, Status.replied.value, Status.closed.value):
            u = units[(last.unit_type, last.unit_name)]
            replied = last.replied_at if last.replied_at is not None and last.replied_at <= as_of else None
            u["handled"] += 1
            u["closed"] += f.closed
            u["on_time"] += f.closed and (replied or f.c.closed_at) <= last.deadline
            u["overdue_open"] += (not f.closed and f.c.status != Status.closed.value and last.deadline < as_of
                                  and not (replied is not None and replied <= last.deadline))
    out["by_unit"] = [
        {"unit_type": ut, "unit_name": un, "assigned": u["assigned"], "handled": u["handled"],
         "closed": u["closed"], "closure_rate": rate(u["closed"], u["handled"]), "on_time": u["on_time"],
         "on_time_rate": rate(u["on_time"], u["closed"]), "returned": u["returned"],
         "return_rate": rate(u["returned"], u["assigned"]), "extended": u["extended"],
         "reopened": u["reopened"], "overdue_open": u["overdue_open"], "contacted": u["contacted"],
         "contact_due": u["contact_due"],
         "contact_on_time": u["contact_on_time"], "contact_on_time_rate": rate(u["contact_on_time"], u["contact_due"])}
        for (ut, un), u in sorted(units.items(), key=lambda kv: (-kv[1]["assigned"], kv[0]))]

    # by week: Monday-based weeks of the received date (Beijing), clipped to the period.
    weeks: list[dict[str, Any]] = []
    monday = date_from - timedelta(days=date_from.weekday())
    while monday <= date_to:
        ws, we = max(monday, date_from), min(monday + timedelta(days=6), date_to)
        s_utc, e_utc = period_bounds(ws, we)
        wf = [f for f in facts if s_utc <= f.c.received_at < e_utc]
        b = _block(wf)
        weeks.append({"week_start": ws.isoformat(), "week_end": we.isoformat(), "received": b["received"],
                      "closed": b["closed"], "closure_rate": b["closure_rate"], "on_time": b["on_time"],
                      "on_time_rate": b["on_time_rate"], "returned": b["returned"], "relapses": b["relapses"],
                      "duplicates": sum(1 for c in children if s_utc <= c.received_at < e_utc)})
        monday += timedelta(days=7)
    out["by_week"] = weeks
    out["definitions"] = "docs/metrics.md"
    return out
