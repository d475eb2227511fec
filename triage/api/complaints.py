"""Complaints and the dispatcher's queue (CONTRACT.md). Thin: each route calls one service function."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.api.deps import (
    get_actor,
    get_case_sink,
    get_drafter,
    get_now,
    get_session,
    get_sla_dep,
    get_triager,
    get_unit_namer,
)
from triage.auth.deps import get_unit_scope, staff_queue_status
from triage.metrics import period_bounds
from triage.queue import service
from triage.queue.models import Complaint
from triage.queue.schemas import (
    AssignIn,
    AssignmentOut,
    CloseIn,
    ComplaintDetail,
    ContactIn,
    ComplaintIn,
    DraftAnswer,
    DraftIn,
    ExtendIn,
    ExtensionDecisionIn,
    IntakeOut,
    MergeIn,
    QueueItem,
    ReasonIn,
    RelapseItem,
    ReopenIn,
    ReplyIn,
    assignment_out,
    detail_out,
    draft_answer,
    intake_out,
    parse_day,
    queue_item,
    relapse_item,
)
from triage.queue.sla import Sla

router = APIRouter(prefix="/api", tags=["complaints"])


def _detail(session: Session, complaint_id: int, unit_scope: str | None = None) -> ComplaintDetail:
    session.expire_all()
    c = service.get_complaint(session, complaint_id)
    children = list(session.scalars(select(Complaint.id).where(Complaint.merged_into == c.id)
                                    .order_by(Complaint.id)))
    return detail_out(c, children, unit_scope)


@router.post("/complaints", status_code=201, response_model=IntakeOut, summary="受理投诉")
def create_complaint(body: ComplaintIn, session: Session = Depends(get_session),
                     triager: Any = Depends(get_triager), now: datetime = Depends(get_now),
                     sla: Sla = Depends(get_sla_dep), actor: str = Depends(get_actor)) -> IntakeOut:
    c = service.intake(session, text=body.full_text(), occurred_at=body.occurred_at, address=body.address,
                       contact=body.contact, source=body.source or "api", external_id=body.external_id,
                       triager=triager, now=now, sla=sla, actor=actor)
    return intake_out(service.get_complaint(session, c.id))


@router.get("/complaints/{complaint_id}", response_model=ComplaintDetail, summary="投诉详情")
def get_complaint(complaint_id: int, session: Session = Depends(get_session),
                  unit_scope: str | None = Depends(get_unit_scope)) -> ComplaintDetail:
    return _detail(session, complaint_id, unit_scope)


@router.get("/queue", response_model=list[QueueItem], summary="待办队列（最紧急在前）")
def get_queue(status: str | None = Query(default=None, description="状态，可逗号分隔；默认所有未办结"),
              unit_type: str | None = None, limit: int = 50, session: Session = Depends(get_session),
              now: datetime = Depends(get_now), sla: Sla = Depends(get_sla_dep),
              unit_scope: str | None = Depends(get_unit_scope)) -> list[QueueItem]:
    if unit_scope is not None:  # unit staff: only what their unit works now (triage/auth/deps.py)
        unit_type, status = unit_scope, staff_queue_status(status)
        if status is None:
            return []
    entries = service.list_queue(session, status=status, unit_type=unit_type, limit=limit, now=now, sla=sla)
    return [queue_item(e) for e in entries]


@router.post("/complaints/{complaint_id}/assign", response_model=AssignmentOut, summary="派单（空请求体=采纳建议）")
def assign(complaint_id: int, body: AssignIn | None = Body(default=None), session: Session = Depends(get_session),
           actor: str = Depends(get_actor), now: datetime = Depends(get_now), sla: Sla = Depends(get_sla_dep),
           unit_namer=Depends(get_unit_namer)) -> AssignmentOut:
    body = body or AssignIn()
    a = service.assign(session, complaint_id=complaint_id, actor=actor, unit_type=body.unit_type,
                       pollution_type=body.pollution_type, subtype=body.subtype, urgency=body.urgency,
                       note=body.note, unit_namer=unit_namer, now=now, sla=sla)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/draft", response_model=DraftAnswer, summary="起草答复")
def draft(complaint_id: int, body: DraftIn | None = Body(default=None), session: Session = Depends(get_session),
          actor: str = Depends(get_actor), now: datetime = Depends(get_now),
          drafter=Depends(get_drafter)) -> DraftAnswer:
    body = body or DraftIn()
    d = service.draft(session, complaint_id=complaint_id, actor=actor, drafter=drafter, findings=body.findings,
                      result=body.result, actions=body.actions, now=now)
    session.commit()
    return draft_answer(d)


@router.post("/complaints/{complaint_id}/reply", response_model=ComplaintDetail, summary="承办单位提交答复")
def reply(complaint_id: int, body: ReplyIn, session: Session = Depends(get_session),
          actor: str = Depends(get_actor), now: datetime = Depends(get_now),
          unit_scope: str | None = Depends(get_unit_scope)) -> ComplaintDetail:
    service.submit_reply(session, complaint_id=complaint_id, actor=actor, reply=body.reply, result=body.result,
                         now=now)
    session.commit()
    return _detail(session, complaint_id, unit_scope)


@router.post("/complaints/{complaint_id}/close", response_model=ComplaintDetail, summary="办结")
def close(complaint_id: int, body: CloseIn, session: Session = Depends(get_session),
          actor: str = Depends(get_actor), now: datetime = Depends(get_now),
          case_sink=Depends(get_case_sink)) -> ComplaintDetail:
    service.close(session, complaint_id=complaint_id, actor=actor, reply=body.reply, result=body.result,
                  case_sink=case_sink, now=now)
    session.commit()
    return _detail(session, complaint_id)


@router.post("/complaints/{complaint_id}/reject", response_model=ComplaintDetail, summary="驳回答复（退回承办单位重新办理）")
def reject_reply(complaint_id: int, body: ReasonIn, session: Session = Depends(get_session),
                 actor: str = Depends(get_actor), now: datetime = Depends(get_now)) -> ComplaintDetail:
    service.reject_reply(session, complaint_id=complaint_id, actor=actor, reason=body.reason, now=now)
    session.commit()
    return _detail(session, complaint_id)


@router.post("/complaints/{complaint_id}/return", response_model=ComplaintDetail, summary="退单")
def return_(complaint_id: int, body: ReasonIn, session: Session = Depends(get_session),
            actor: str = Depends(get_actor), now: datetime = Depends(get_now),
            unit_scope: str | None = Depends(get_unit_scope)) -> ComplaintDetail:
    service.return_(session, complaint_id=complaint_id, actor=actor, reason=body.reason, now=now)
    session.commit()
    return _detail(session, complaint_id, unit_scope)


@router.post("/complaints/{complaint_id}/acknowledge", response_model=AssignmentOut, summary="承办单位签收")
def acknowledge(complaint_id: int, session: Session = Depends(get_session), actor: str = Depends(get_actor),
                now: datetime = Depends(get_now)) -> AssignmentOut:
    a = service.acknowledge(session, complaint_id=complaint_id, actor=actor, now=now)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/contact", response_model=AssignmentOut, summary="登记先行联系")
def record_contact(complaint_id: int, body: ContactIn, session: Session = Depends(get_session),
                   actor: str = Depends(get_actor), now: datetime = Depends(get_now)) -> AssignmentOut:
    a = service.record_contact(session, complaint_id=complaint_id, actor=actor, note=body.note,
                               contacted_at=body.contacted_at, now=now)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/extend", response_model=AssignmentOut, summary="延期（调度员直接批准）")
def extend(complaint_id: int, body: ExtendIn, session: Session = Depends(get_session),
           actor: str = Depends(get_actor), now: datetime = Depends(get_now),
           sla: Sla = Depends(get_sla_dep)) -> AssignmentOut:
    a = service.extend(session, complaint_id=complaint_id, actor=actor, reason=body.reason,
                       deadline=body.deadline, working_days=body.working_days, now=now, sla=sla)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/extension-request", response_model=AssignmentOut,
             summary="承办单位申请延期（待调度员审批）")
def request_extension(complaint_id: int, body: ExtendIn, session: Session = Depends(get_session),
                      actor: str = Depends(get_actor), now: datetime = Depends(get_now),
                      sla: Sla = Depends(get_sla_dep)) -> AssignmentOut:
    a = service.request_extension(session, complaint_id=complaint_id, actor=actor, reason=body.reason,
                                  deadline=body.deadline, working_days=body.working_days, now=now, sla=sla)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/extension-decision", response_model=AssignmentOut,
             summary="审批延期申请（同意或不同意）")
def decide_extension(complaint_id: int, body: ExtensionDecisionIn, session: Session = Depends(get_session),
                     actor: str = Depends(get_actor), now: datetime = Depends(get_now),
                     sla: Sla = Depends(get_sla_dep)) -> AssignmentOut:
    a = service.decide_extension(session, complaint_id=complaint_id, actor=actor, approve=body.approve,
                                 reason=body.reason, now=now, sla=sla)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/reopen", response_model=AssignmentOut, summary="重办")
def reopen(complaint_id: int, body: ReopenIn, session: Session = Depends(get_session),
           actor: str = Depends(get_actor), now: datetime = Depends(get_now), sla: Sla = Depends(get_sla_dep),
           unit_namer=Depends(get_unit_namer)) -> AssignmentOut:
    a = service.reopen(session, complaint_id=complaint_id, actor=actor, reason=body.reason,
                       unit_type=body.unit_type, unit_namer=unit_namer, now=now, sla=sla)
    session.commit()
    return assignment_out(a)


@router.post("/complaints/{complaint_id}/merge", response_model=ComplaintDetail, summary="合并重复件")
def merge(complaint_id: int, body: MergeIn, session: Session = Depends(get_session),
          actor: str = Depends(get_actor), now: datetime = Depends(get_now)) -> ComplaintDetail:
    service.merge(session, complaint_id=complaint_id, parent_id=body.parent_id, actor=actor, reason=body.reason,
                  now=now)
    session.commit()
    return _detail(session, complaint_id)


@router.get("/relapses", response_model=list[RelapseItem], summary="反弹件")
def relapses(date_from: str | None = Query(default=None, alias="from", description="YYYY-MM-DD"),
             date_to: str | None = Query(default=None, alias="to", description="YYYY-MM-DD"),
             session: Session = Depends(get_session), now: datetime = Depends(get_now)) -> list[RelapseItem]:
    from triage.queue.sla import local_date

    end_day = parse_day(date_to, "to") or local_date(now)
    start_day = parse_day(date_from, "from") or end_day - timedelta(days=89)
    start, end = period_bounds(start_day, end_day)
    return [relapse_item(r) for r in service.list_relapses(session, start=start, end=end)]


@router.post("/triage/retry", summary="重试未分拣的投诉")
def retry_triage(session: Session = Depends(get_session),
                 triager: Any = Depends(get_triager), sla: Sla = Depends(get_sla_dep)) -> dict[str, int]:
    return service.retry_pending_triage(session, triager, sla=sla)

