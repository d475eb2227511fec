"""GET /api/metrics and the work report over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from triage.api.deps import get_now, get_session
from triage.metrics import compute_metrics
from triage.queue.schemas import parse_day
from triage.queue.sla import local_date

router = APIRouter(prefix="/api", tags=["metrics"])


def _period(date_from: str | None, date_to: str | None, now: datetime):
    end = parse_day(date_to, "to") or local_date(now)
    start = parse_day(date_from, "from") or end.replace(day=1)
    return start, end


@router.get("/metrics", summary="办结率、按时办结率、退单率、重办率等（定义见 docs/metrics.md）")
def metrics(date_from: str | None = Query(default=None, alias="from", description="YYYY-MM-DD，默认本月1日"),
            date_to: str | None = Query(default=None, alias="to", description="YYYY-MM-DD，默认今天"),
            session: Session = Depends(get_session), now: datetime = Depends(get_now)) -> dict[str, Any]:
    start, end = _period(date_from, date_to, now)
    return compute_metrics(session, start, end, as_of=now)


@router.get("/report", response_class=PlainTextResponse, summary="工作报告（Markdown）")
def report(date_from: str | None = Query(default=None, alias="from"),
           date_to: str | None = Query(default=None, alias="to"),
           session: Session = Depends(get_session), now: datetime = Depends(get_now)) -> str:
    from triage.report import build_report

    start, end = _period(date_from, date_to, now)
    return build_report(session, start, end, as_of=now)
