"""Pydantic schemas at the HTTP edge (CONTRACT.md): request bodies and the shapes the API answers with."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triage.queue.models import Assignment, Complaint, Event, ReplyDraft, Suggestion


# ------------------------------------------------------------------------------------------------ bodies
class ComplaintIn(BaseModel):
    # Lengths and emptiness are checked by the service (one place, Chinese + English reasons).
    text: str = Field(description="投诉内容")
    title: str | None = Field(default=None, description="诉求标题（可选）：不在内容中时置于内容之前，与文件导入相同")
    occurred_at: datetime | None = Field(default=None, description="事发时间：ISO 8601、2026/3/5 9:30 或 2026年3月5日 9时30分；"
                                                                   "不带时区按北京时间")
    address: str | None = None
    contact: str | None = None
    source: str | None = Field(default="api", description="api / phone / web / import / open311 …")
    external_id: str | None = Field(default=None, description="12345 平台工单号（字符串或整数）；重复提交返回 409")

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _chinese_date(cls, v: Any) -> Any:
        """Dates as the platform writes them (2026年3月5日 9时30分, 2026/03/05 09:30), as file import reads them."""
        if isinstance(v, str) and ("年" in v or "/" in v):
            from triage.kb.cases import parse_when

            try:
                return parse_when(v)
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"无法识别的日期 {v!r} / unreadable date") from exc
        return v

    @field_validator("external_id", mode="before")
    @classmethod
    def _numeric_id(cls, v: Any) -> Any:
        # 12345 work-order numbers are often sent as JSON numbers; import and Open311 already take them.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    def full_text(self) -> str:
        title = (self.title or "").strip()
        return f"{title}。{self.text}" if title and title not in self.text else self.text


class AssignIn(BaseModel):
    """Empty body = accept the suggestion; any field = override (labelled feedback)."""

    unit_type: str | None = None
    pollution_type: str | None = None
    subtype: str | None = None
    urgency: str | None = Field(default=None, description="normal / urgent")
    note: str | None = None


class DraftIn(BaseModel):
    findings: str | None = Field(default=None, description="核查情况")
    result: str | None = Field(default=None, description="属实 / 部分属实 / 不属实")
    actions: str | None = Field(default=None, description="处理措施")


class ReplyIn(BaseModel):
    reply: str
    result: str


class CloseIn(BaseModel):
    reply: str | None = Field(default=None, description="答复内容（已提交答复的件可省略）")
    result: str | None = Field(default=None, description="属实 / 部分属实 / 不属实")


class ReasonIn(BaseModel):
    reason: str


class ReopenIn(BaseModel):
    reason: str
    unit_type: str | None = Field(default=None, description="改派其他单位重办时填写")


class ExtendIn(BaseModel):
    reason: str
    deadline: str | None = Field(default=None, description="新期限：YYYY-MM-DD（当日 23:59:59 北京时间）或 ISO 时间")
    working_days: int | None = Field(default=None, description="或：在原期限基础上延长的工作日数")


class ExtensionDecisionIn(BaseModel):
    approve: bool
    reason: str | None = Field(default=None, description="不同意时必填：理由")


class ContactIn(BaseModel):
    note: str = Field(description="联系方式与结果，如：电话联系投诉人，约定明日现场核查")
    contacted_at: str | None = Field(default=None, description="联系时间（ISO，无时区按北京时间）；默认现在")


class MergeIn(BaseModel):
    parent_id: int
    reason: str | None = None


# ----------------------------------------------------------------------------------------------- answers
class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SuggestionOut(_Out):
    pollution_type: str
    subtype: str
    unit_type: str
    unit_name: str
    confidence: float
    unit_confidence: float
    low_confidence: bool
    alternatives: list[dict[str, Any]] = []
    unit_alternatives: list[dict[str, Any]] = []
    unit_decided_by: str = ""
    similar_cases: list[dict[str, Any]] = []
    regulations: list[dict[str, Any]] = []
    evidence: dict[str, Any] = {}
    versions: dict[str, str] = {}
    created_at: datetime


class AssignmentOut(_Out):
    id: int
    complaint_id: int
    unit_type: str
    unit_name: str
    pollution_type: str | None
    subtype: str | None
    assigned_at: datetime
    assigned_by: str
    deadline: datetime
    contact_deadline: datetime | None
    deadline_note: str | None
    sla_rule: str | None
    extensions: int
    accepted_suggestion: bool
    suggested_pollution_type: str | None
    suggested_subtype: str | None
    suggested_unit_type: str | None
    note: str | None
    reason: str
    ended_at: datetime | None
    end_reason: str | None
    extension_requested_at: datetime | None = None
    extension_requested_by: str | None = None
    extension_request_reason: str | None = None
    extension_request_deadline: datetime | None = None
    received_at: datetime | None = None
    received_by: str | None = None
    contacted_at: datetime | None = None
    contacted_by: str | None = None
    contact_note: str | None = None
    replied_at: datetime | None = None


class DraftOut(_Out):
    id: int
    created_at: datetime
    created_by: str
    text: str
    citations: list[dict[str, Any]]
    generator: str
    prompt_version: str | None
    quality: dict[str, Any] | None
    notice: str | None
    findings: str | None
    actions: str | None = None
    result: str | None
    approved: bool


class EventOut(_Out):
    id: int
    actor: str
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    data: dict[str, Any]


class ComplaintOut(_Out):
    id: int
    external_id: str | None
    source: str
    text: str
    address: str | None
    contact: str | None
    occurred_at: datetime | None
    received_at: datetime
    status: str
    urgency: str
    pollution_type: str | None
    subtype: str | None
    unit_type: str | None
    unit_name: str | None
    duplicate_of: int | None
    duplicate_score: float | None
    merged_into: int | None
    relapse_of: int | None
    relapse_score: float | None
    deadline: datetime | None
    deadline_note: str | None
    closed_at: datetime | None
    result: str | None
    reply: str | None
    triage_attempts: int
    triage_error: str | None
    return_count: int
    extension_count: int
    reopen_count: int


class IntakeOut(BaseModel):
    id: int
    status: str
    suggestion: SuggestionOut | None
    duplicate_of: int | None = None
    relapse_of: int | None = None
    urgency: str
    deadline: datetime | None
    deadline_note: str | None = None
    triage_error: str | None = None


class ComplaintDetail(BaseModel):
    complaint: ComplaintOut
    suggestion: SuggestionOut | None
    assignment: AssignmentOut | None
    assignments: list[AssignmentOut]
    drafts: list[DraftOut]
    events: list[EventOut]
    children: list[int] = Field(default=[], description="并入本件的重复件")


class DraftAnswer(BaseModel):
    id: int
    text: str
    citations: list[dict[str, Any]]
    generator: str
    prompt_version: str | None
    quality: dict[str, Any] | None
    notice: str | None


class QueueItem(BaseModel):
    id: int
    status: str
    text: str
    address: str | None
    received_at: datetime
    deadline: datetime | None
    deadline_note: str | None
    overdue: bool
    due_soon: bool
    low_confidence: bool
    urgency: str
    priority: int
    priority_reason: str
    pollution_type: str | None
    subtype: str | None
    unit_type: str | None
    unit_name: str | None
    confidence: float | None
    duplicate_of: int | None
    relapse_of: int | None
    triage_error: str | None
    extension_pending: bool = False
    contact_overdue: bool = False
    unacknowledged: bool = False
    reply_rejected: bool = False


class RelapseItem(BaseModel):
    id: int
    received_at: datetime
    text: str
    address: str | None
    pollution_type: str | None
    relapse_of: int
    relapse_of_closed_at: datetime | None
    relapse_of_result: str | None
    days_since_close: int | None
    score: float | None


# ---------------------------------------------------------------------------------------- constructors
def suggestion_out(s: Suggestion | None) -> SuggestionOut | None:
    return SuggestionOut.model_validate(s) if s is not None else None


def detail_out(c: Complaint, children: list[int], unit_scope: str | None = None) -> ComplaintDetail:
    """unit_scope: the unit a unit-staff caller is limited to; the suggestion then lists only its own unit's
    similar cases (`own_unit_cases`)."""
    from triage.auth.deps import own_unit_cases

    suggestion = suggestion_out(c.suggestion)
    if suggestion is not None and unit_scope is not None:
        suggestion.similar_cases = own_unit_cases(suggestion.similar_cases, unit_scope)
    return ComplaintDetail(
        complaint=ComplaintOut.model_validate(c),
        suggestion=suggestion,
        assignment=AssignmentOut.model_validate(c.assignment) if c.assignment else None,
        assignments=[AssignmentOut.model_validate(a) for a in c.assignments],
        drafts=[DraftOut.model_validate(d) for d in c.drafts],
        events=[EventOut.model_validate(e) for e in c.events],
        children=children,
    )


def intake_out(c: Complaint) -> IntakeOut:
    return IntakeOut(id=c.id, status=c.status, suggestion=suggestion_out(c.suggestion),
                     duplicate_of=c.duplicate_of, relapse_of=c.relapse_of, urgency=c.urgency, deadline=c.deadline,
                     deadline_note=c.deadline_note, triage_error=c.triage_error)


def assignment_out(a: Assignment) -> AssignmentOut:
    return AssignmentOut.model_validate(a)


def draft_answer(d: ReplyDraft) -> DraftAnswer:
    return DraftAnswer(id=d.id, text=d.text, citations=d.citations or [], generator=d.generator,
                       prompt_version=d.prompt_version, quality=d.quality, notice=d.notice)


def event_out(e: Event) -> EventOut:
    return EventOut.model_validate(e)


def queue_item(entry) -> QueueItem:
    c = entry.complaint
    s = c.suggestion
    return QueueItem(
        id=c.id, status=c.status, text=c.text[:200], address=c.address, received_at=c.received_at,
        deadline=c.deadline, deadline_note=c.deadline_note, overdue=entry.overdue, due_soon=entry.due_soon,
        low_confidence=entry.low_confidence, urgency=c.urgency, priority=entry.priority,
        priority_reason=entry.priority_reason,
        pollution_type=c.pollution_type or (s.pollution_type if s else None),
        subtype=c.subtype or (s.subtype if s else None),
        unit_type=c.unit_type or (s.unit_type if s else None),
        unit_name=c.unit_name or (s.unit_name if s else None),
        confidence=s.confidence if s else None, duplicate_of=c.duplicate_of, relapse_of=c.relapse_of,
        triage_error=c.triage_error, extension_pending=c.extension_pending,
        contact_overdue=entry.contact_overdue, unacknowledged=entry.unacknowledged,
        reply_rejected=entry.reply_rejected)


def relapse_item(r) -> RelapseItem:
    c = r.complaint
    days = r.days_since_close
    return RelapseItem(id=c.id, received_at=c.received_at, text=c.text, address=c.address,
                       pollution_type=c.pollution_type or (c.suggestion.pollution_type if c.suggestion else None),
                       relapse_of=r.previous.id, relapse_of_closed_at=r.previous_closed_at,
                       relapse_of_result=r.previous_result, days_since_close=days, score=c.relapse_score)


def parse_day(value: str | None, name: str) -> date | None:
    from triage.queue.service import InvalidInput

    zh = {"from": "开始日期", "to": "结束日期", "--from": "开始日期", "--to": "结束日期"}.get(name, name)
    if value is None or value == "":
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{zh}格式应为 YYYY-MM-DD：{value!r} / {name} must be YYYY-MM-DD") from exc
    if not 1970 <= day.year <= 2200:
        raise InvalidInput(f"{zh}超出范围（1970–2200 年）：{value!r} / {name} out of range")
    return day
