"""The work queue's domain logic: intake, triage retry, and one function per state transition.

Every function takes a Session and keyword-only arguments. Transitions lock the complaint row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers) and the row's version counter turns a lost
race into ``ConcurrentUpdate``; an illegal transition raises ``IllegalTransition`` before anything is changed.
Each transition writes an ``Event`` (who, when, from, to, why) and flushes; the caller commits (the API does it
per request). ``intake`` and ``retry_pending_triage`` commit themselves: a complaint is stored before the
model is asked anything, so a model failure never loses it.

State machine::

    received ──triage──▶ triaged ──assign──▶ assigned ──reply──▶ replied ──close──▶ closed
        └──────────assign (labels given)──────▲  │  ▲ └──────────close──────────────▲   │
                                  returned ◀─return│  └extend (延期, stays assigned)      │
                                     └──assign────┘  ◀──────────reopen (重办)──────────┘
    any open state ──merge──▶ merged ──(parent closes)──▶ closed ──(parent reopens)──▶ merged
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from triage.queue import duplicates as dup
from triage.queue.models import (
    OPEN_STATUSES,
    RESULTS,
    Assignment,
    Complaint,
    Event,
    ReplyDraft,
    Status,
    Suggestion,
    utcnow,
)
from triage.queue.sla import TZ, Sla, SlaConfigError, get_sla, parse_deadline, to_local

log = logging.getLogger(__name__)

MAX_TEXT = 20_000
MAX_FIELD = 500
FUTURE_TOLERANCE = timedelta(minutes=10)
MAX_EXTENSION = timedelta(days=366)  # clocks of call-centre PCs drift; more than this is an input error
SYSTEM = "system"

# Generic names of the unit kinds (LABELS.md), used when the jurisdiction's routing cannot name the unit.
UNIT_KIND_NAMES = {
    "ecology_environment": "生态环境部门", "urban_management": "城市管理综合行政执法部门",
    "public_security": "公安派出所", "traffic_police": "公安交通管理部门", "housing_construction": "住房和城乡建设部门",
    "water_affairs": "水务部门", "street_town": "属地街道（镇）", "sanitation": "环境卫生管理部门",
    "transport": "交通运输部门", "agriculture": "农业农村部门", "market_regulation": "市场监督管理部门",
    "natural_resources": "自然资源部门", "dispatch_center": "二次派单中心", "company": "相关企业（物业）",
    "other": "其他单位",
}


# ------------------------------------------------------------------------------------------------- errors
class DomainError(Exception):
    """A refusal with a Chinese + English reason; ``status_code`` is what the API answers."""

    status_code = 409

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotFound(DomainError):
    status_code = 404


class InvalidInput(DomainError):
    status_code = 422


class IllegalTransition(DomainError):
    status_code = 409


class ConcurrentUpdate(IllegalTransition):
    pass


class DuplicateExternalId(DomainError):
    status_code = 409


class DraftingFailed(DomainError):
    status_code = 503


STATUS_ZH = {
    "received": "已受理（待分拣）", "triaged": "待派单", "assigned": "办理中", "returned": "已退单",
    "replied": "已答复待审核", "closed": "已办结", "merged": "已合并",
}
ACTION_ZH = {
    "assign": "派单", "return": "退单", "extend": "延期", "reply": "提交答复", "close": "办结", "reopen": "重办",
    "merge": "合并", "draft": "起草答复", "triage": "分拣", "reject_reply": "驳回答复",
    "request_extension": "申请延期", "decide_extension": "审批延期", "acknowledge": "签收",
    "record_contact": "登记先行联系",
}


def _illegal(action: str, c: Complaint) -> IllegalTransition:
    return IllegalTransition(
        f"当前状态“{STATUS_ZH.get(c.status, c.status)}”不能{ACTION_ZH.get(action, action)} / "
        f"cannot {action} a complaint in status '{c.status}'",
        status=c.status)


# --------------------------------------------------------------------------------------------- protocols
class Triager(Protocol):
    def suggest(self, text: str, *, occurred_at: datetime | None = None, address: str | None = None) -> Any: ...


CaseSink = Callable[[dict[str, Any]], Any]
UnitNamer = Callable[[str], str]
Drafter = Callable[[Any], Any]  # DraftRequest -> Draft


# ---------------------------------------------------------------------------------------------- helpers
def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _aware(dt: datetime | None) -> datetime | None:
    """Naive datetimes from citizens and CSV files are Beijing time."""
    if dt is None:
        return None
    return dt.replace(tzinfo=TZ) if dt.tzinfo is None else dt


MAX_ID = 2**63 - 1  # larger ids cannot be bound (SQLite, PostgreSQL bigint): no such complaint


def _lock(session: Session, complaint_id: int) -> Complaint:
    if not 0 < complaint_id <= MAX_ID:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    c = session.scalars(
        select(Complaint).where(Complaint.id == complaint_id).with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if c is None:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    return c


def _flush(session: Session) -> None:
    """Flush; a lost race (stale version, SQLite busy) becomes ConcurrentUpdate and nothing is written."""
    try:
        session.flush()
    except StaleDataError as exc:
        session.rollback()
        raise ConcurrentUpdate("该投诉刚被他人修改，请刷新后重试 / the complaint was changed concurrently; reload") from exc
    except OperationalError as exc:
        if "locked" not in str(exc).lower():
            raise
        session.rollback()
        raise ConcurrentUpdate("该投诉正被他人处理，请稍后重试 / the complaint is being changed; retry") from exc


def _event(session: Session, c: Complaint, *, kind: str, actor: str, at: datetime,
           from_status: str | None, to_status: str | None, reason: str | None = None,
           data: dict[str, Any] | None = None) -> Event:
    ev = Event(complaint_id=c.id, actor=actor, at=at, kind=kind, from_status=from_status, to_status=to_status,
               reason=reason, data=_jsonable(data or {}))
    session.add(ev)
    c.updated_at = at  # every event touches the row: concurrent changes to the same complaint collide
    return ev


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# Control characters (NUL cannot even be stored on PostgreSQL), lone surrogates (not encodable), bidi overrides
# (they disguise text), non-characters. Tab, newline and carriage return are ordinary text.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
                        "\ufffe\uffff]")
_INVISIBLE = re.compile("[\s\u200b-\u200f\u2060-\u2064\ufeff\u3000]+")


# The Chinese half of a message is what the pages show: it names the field as the form does; the English half
# keeps the API's field code.
FIELD_ZH = {
    "text": "投诉内容", "address": "地址", "contact": "联系方式", "source": "来源", "external_id": "工单号",
    "occurred_at": "事发时间", "pollution_type": "污染类型", "subtype": "具体问题", "unit_type": "承办单位",
    "note": "说明", "reason": "理由", "reply": "答复内容", "findings": "核查情况", "actions": "处理措施",
    "deadline": "新的期限", "working_days": "延长的工作日数",
}


def _zh(field: str) -> str:
    return FIELD_ZH.get(field, field)


def _check_chars(v: str, field: str, zh: str | None = None) -> str:
    bad = _BAD_CHARS.search(v)
    if bad:
        raise InvalidInput(f"{zh or _zh(field)}含不可见的控制字符 U+{ord(bad.group()):04X}（第 {bad.start() + 1} 个字符） / "
                           f"{field} contains the control character U+{ord(bad.group()):04X}")
    return v


def _require_text(value: str | None, field: str, zh: str, max_len: int = MAX_TEXT) -> str:
    v = (value or "").strip()
    if not _INVISIBLE.sub("", v):
        raise InvalidInput(f"{zh}不能为空 / {field} must not be empty")
    if len(v) > max_len:
        raise InvalidInput(f"{zh}超过 {max_len} 字 / {field} longer than {max_len} characters")
    return _check_chars(v, field, zh)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN1 = re.compile(r"[\u0080-\u00ff]")


def _garbled(text: str) -> bool:
    """Chinese bytes decoded as Latin-1 ("ÊÐÃñÀ´µç·´Ó³" for 市民来电反映): no Chinese character, and most characters
    from the Latin-1 upper half. Such a text was triaged as not_environmental at 0.92, with no low-confidence flag."""
    if _CJK.search(text):
        return False
    letters = [ch for ch in text if not ch.isspace()]
    return len(letters) >= 4 and len(_LATIN1.findall(text)) / len(letters) > 0.5


def _optional_text(value: str | None, field: str, max_len: int = MAX_FIELD) -> str | None:
    if value is None:
        return None
    v = str(value).strip()
    if len(v) > max_len:
        raise InvalidInput(f"{_zh(field)}超过 {max_len} 字 / {field} longer than {max_len} characters")
    return _check_chars(v, field) or None


def default_unit_name(unit_type: str) -> str:
    return UNIT_KIND_NAMES.get(unit_type, unit_type)


_CODE = re.compile(r"^[a-z][a-z_]*(\.[a-z_]+)?$")


def _taxonomy():
    try:
        from triage.taxonomy import UNIT_TYPES, get_taxonomy

        return get_taxonomy(), UNIT_TYPES
    except Exception:  # noqa: BLE001 - taxonomy absent or broken: fall back to format checks
        return None, None


def _check_labels(pollution_type: str, subtype: str | None, unit_type: str) -> None:
    for name, v in (("pollution_type", pollution_type), ("subtype", subtype), ("unit_type", unit_type)):
        if v and not _CODE.match(v):
            raise InvalidInput(f"{_zh(name)}编码格式不对：{v!r} / malformed {name} code")
    if subtype and not subtype.startswith(pollution_type + "."):
        raise InvalidInput(f"所选具体问题不属于所选污染类型（{subtype} / {pollution_type}） / subtype does not "
                           f"belong to pollution_type")
    tax, units = _taxonomy()
    if tax is None:
        return
    if pollution_type not in tax.types:
        raise InvalidInput(f"未知的污染类型：{pollution_type} / unknown pollution_type")
    if subtype and not tax.is_valid(pollution_type, subtype):
        raise InvalidInput(f"未知的具体问题：{subtype} / unknown subtype")
    if unit_type not in units:
        raise InvalidInput(f"未知的承办单位类别：{unit_type} / unknown unit_type")


def _default_subtype(pollution_type: str) -> str:
    tax, _ = _taxonomy()
    if tax is not None:
        return tax.default_subtype(pollution_type)
    return "" if pollution_type == "not_environmental" else f"{pollution_type}.other"


def get_complaint(session: Session, complaint_id: int) -> Complaint:
    if not 0 < complaint_id <= MAX_ID:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    c = session.scalars(
        select(Complaint).where(Complaint.id == complaint_id).options(
            selectinload(Complaint.suggestions), selectinload(Complaint.assignments),
            selectinload(Complaint.drafts), selectinload(Complaint.events))
    ).one_or_none()
    if c is None:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    return c


# ------------------------------------------------------------------------------------------------ intake
@dataclass
class TriageOutcome:
    ok: bool
    error: str | None = None


def intake(session: Session, *, text: str, occurred_at: datetime | None = None, address: str | None = None,
           contact: str | None = None, source: str = "api", external_id: str | None = None,
           triager: Triager | None = None, actor: str = SYSTEM, now: datetime | None = None,
           sla: Sla | None = None, detect_duplicates: bool = True,
           duplicate_window: timedelta = dup.DUPLICATE_WINDOW,
           relapse_window: timedelta = dup.RELAPSE_WINDOW) -> Complaint:
    """Store a complaint (committed, status received), then triage it and look for duplicates / relapses.

    Raises InvalidInput (bad input) or DuplicateExternalId (``external_id`` already stored; ``.extra['id']``).
    A triager failure is not an error: the complaint stays ``received`` with ``triage_error`` set.
    """
    now = _now(now)
    sla_error = None
    if sla is None:
        try:
            sla = get_sla()
        except SlaConfigError as exc:  # the office's sla.yaml is broken: store the complaint all the same
            sla_error = str(exc)
            log.error("intake without an SLA: %s", exc)
    text_v = _require_text(text, "text", "投诉内容")
    if _garbled(text_v):
        raise InvalidInput("投诉内容像是编码错误产生的乱码（如 GBK 文字被当作 Latin-1 读取），请以 UTF-8 重新发送 / the text "
                           "looks garbled by a wrong encoding (GBK read as Latin-1?); send it as UTF-8")
    if occurred_at is not None and occurred_at.year < 1970:
        raise InvalidInput("事发时间早于 1970 年，不可能 / occurred_at before 1970 is not plausible")
    occurred = _aware(occurred_at)
    if occurred is not None and occurred > now + FUTURE_TOLERANCE:
        raise InvalidInput("事发时间不能晚于当前时间 / occurred_at must not be in the future")
    address_v = _optional_text(address, "address")
    contact_v = _optional_text(contact, "contact", 200)
    source_v = _optional_text(source, "source", 32) or "api"
    ext = _optional_text(external_id, "external_id", 128)
    if ext is not None:
        existing = session.scalar(select(Complaint.id).where(Complaint.external_id == ext))
        if existing is not None:
            raise DuplicateExternalId(
                f"工单号 {ext} 已登记为投诉 #{existing} / external_id already exists", id=existing)

    urgency = sla.policy.urgency_of(text_v) if sla is not None else "normal"
    provisional = sla.compute(now, urgency=urgency, occurred_at=occurred, text=text_v) if sla is not None else None
    c = Complaint(external_id=ext, source=source_v, text=text_v, address=address_v, contact=contact_v,
                  occurred_at=occurred, received_at=now, status=Status.received.value, urgency=urgency,
                  deadline=provisional.due if provisional else None,
                  deadline_note=provisional.note if provisional else None,
                  triage_error=f"暂未分拣：{sla_error}" if sla_error else None)
    session.add(c)
    try:
        session.flush()
        _event(session, c, kind="intake", actor=actor, at=now, from_status=None, to_status=Status.received.value,
               data={"source": source_v, "urgency": urgency})
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if ext is not None:
            existing = session.scalar(select(Complaint.id).where(Complaint.external_id == ext))
            if existing is not None:
                raise DuplicateExternalId(
                    f"工单号 {ext} 已登记为投诉 #{existing} / external_id already exists", id=existing) from exc
        raise

    if triager is not None and sla is not None:  # without an SLA the background retry triages it once fixed
        triage_one(session, complaint_id=c.id, triager=triager, now=now, sla=sla)
    if detect_duplicates:
        try:
            detect_links(session, complaint_id=c.id, now=now, duplicate_window=duplicate_window,
                         relapse_window=relapse_window)
        except Exception:  # noqa: BLE001 - a flag is a convenience; the complaint is already stored
            session.rollback()
            log.exception("duplicate/relapse detection failed for complaint %s", c.id)
    session.refresh(c)
    return c


def _suggestion_record(s: Any, complaint_id: int, now: datetime) -> Suggestion:
    from triage.classify.types import Suggestion as SuggestionModel

    if not isinstance(s, SuggestionModel):
        s = SuggestionModel.model_validate(s if isinstance(s, dict) else s.model_dump())
    data = s.model_dump(mode="json")
    known = {"pollution_type", "subtype", "unit_type", "unit_name", "confidence", "unit_confidence",
             "low_confidence", "alternatives", "unit_alternatives", "unit_decided_by", "similar_cases",
             "regulations", "versions"}
    return Suggestion(
        complaint_id=complaint_id, created_at=now, pollution_type=s.pollution_type, subtype=s.subtype,
        unit_type=s.unit_type, unit_name=s.unit_name, confidence=float(s.confidence),
        unit_confidence=float(s.unit_confidence), low_confidence=bool(s.low_confidence),
        alternatives=data["alternatives"], unit_alternatives=data["unit_alternatives"],
        unit_decided_by=s.unit_decided_by[:300], similar_cases=data["similar_cases"],
        regulations=data["regulations"], versions=data["versions"],
        evidence={k: v for k, v in data.items() if k not in known})


def triage_one(session: Session, *, complaint_id: int, triager: Triager, now: datetime | None = None,
               sla: Sla | None = None) -> TriageOutcome:
    """Ask the triager about one ``received`` complaint; commit the suggestion (→ triaged) or the failure.

    The model runs without holding a lock; the result is applied only if the complaint is still ``received``.
    """
    sla = sla or get_sla()
    c = session.get(Complaint, complaint_id)
    if c is None:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    if c.status != Status.received.value:
        return TriageOutcome(ok=False, error=f"status is {c.status}")
    text, occurred_at, address = c.text, c.occurred_at, c.address
    session.commit()  # end the read transaction before the (slow) model call
    try:
        result = triager.suggest(text, occurred_at=occurred_at, address=address)
        if result is None:
            raise RuntimeError("triager returned no suggestion")
        error = None
    except Exception as exc:  # noqa: BLE001 - any model/Chroma failure keeps the complaint received
        result, error = None, f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("triage failed for complaint %s: %s", complaint_id, error)
    at = _now(now) if now is not None else utcnow()
    try:
        c = _lock(session, complaint_id)
        if c.status != Status.received.value:  # a dispatcher acted meanwhile
            session.rollback()
            return TriageOutcome(ok=False, error=f"status is {c.status}")
        c.triage_attempts = (c.triage_attempts or 0) + 1
        if result is not None:
            try:
                rec = _suggestion_record(result, c.id, at)
            except Exception as exc:  # noqa: BLE001 - a malformed suggestion is a triage failure too
                rec, error = None, f"invalid suggestion: {type(exc).__name__}: {exc}"[:2000]
                log.warning("triage of complaint %s returned an invalid suggestion: %s", complaint_id, error)
        else:
            rec = None
        if rec is None:
            c.triage_error = error
            _event(session, c, kind="triage_failed", actor=SYSTEM, at=at, from_status=c.status,
                   to_status=c.status, reason=error, data={"attempts": c.triage_attempts})
            _flush(session)
            session.commit()
            return TriageOutcome(ok=False, error=error)
        session.add(rec)
        c.triage_error = None
        if rec.subtype in sla.policy.urgent_subtypes and c.urgency != "urgent":
            c.urgency = "urgent"
        # The provisional deadline now knows the type (night noise, drinking water…).
        d = sla.compute(c.received_at, urgency=c.urgency, pollution_type=rec.pollution_type, subtype=rec.subtype,
                        occurred_at=c.occurred_at, text=c.text)
        c.deadline, c.deadline_note = d.due, d.note
        prev = c.status
        c.status = Status.triaged.value
        _event(session, c, kind="triage", actor=SYSTEM, at=at, from_status=prev, to_status=c.status,
               data={"pollution_type": rec.pollution_type, "subtype": rec.subtype, "unit_type": rec.unit_type,
                     "confidence": rec.confidence, "low_confidence": rec.low_confidence,
                     "attempts": c.triage_attempts, "versions": rec.versions})
        _flush(session)
        session.commit()
        return TriageOutcome(ok=True)
    except ConcurrentUpdate:
        return TriageOutcome(ok=False, error="concurrent update")


RETRY_BACKOFF_CAP = timedelta(hours=6)


def retry_backoff(attempts: int) -> timedelta:
    """Wait before the next automatic try: 2, 4, 8 … minutes after the last one, at most 6 hours."""
    return min(timedelta(minutes=2 ** min(max(attempts, 1), 12)), RETRY_BACKOFF_CAP)


def retry_pending_triage(session: Session, triager: Triager | None, *, limit: int = 200,
                         max_attempts: int | None = None, force: bool = True, now: datetime | None = None,
                         sla: Sla | None = None) -> dict[str, int]:
    """Triage every complaint still ``received`` (oldest first). Returns counts: tried, triaged, failed.

    ``force=False`` (the periodic background task) skips complaints whose last failed try is more recent than
    ``retry_backoff(attempts)``, so a model that stays down does not flood the audit trail.
    """
    counts = {"tried": 0, "triaged": 0, "failed": 0}
    if triager is None:
        return counts
    at = _now(now) if now is not None else utcnow()
    q = select(Complaint.id, Complaint.triage_attempts, Complaint.updated_at).where(
        Complaint.status == Status.received.value, Complaint.merged_into.is_(None))
    if max_attempts is not None:
        q = q.where(Complaint.triage_attempts < max_attempts)
    rows = session.execute(q.order_by(Complaint.received_at, Complaint.id).limit(limit)).all()
    session.commit()
    for cid, attempts, last in rows:
        if not force and attempts and last is not None and at < last + retry_backoff(attempts):
            continue
        counts["tried"] += 1
        try:
            out = triage_one(session, complaint_id=cid, triager=triager, now=now, sla=sla)
        except Exception:  # noqa: BLE001 - one bad row must not stop the others
            session.rollback()
            log.exception("retrying triage of complaint %s", cid)
            out = TriageOutcome(ok=False)
        counts["triaged" if out.ok else "failed"] += 1
    return counts


def retry_case_learning(session: Session, case_sink: CaseSink | None, *, limit: int = 200,
                        now: datetime | None = None) -> dict[str, int]:
    """Hand the knowledge base the closed cases it missed: those whose last attempt (at closing) failed, e.g.
    with Chroma down. A success is recorded as ``case_learned``; a failure is only logged (the trail already
    says it failed), and the round stops at the first one: the store is still down. A case the knowledge base
    refuses for its content (``permanent``) is recorded as ``case_not_learnable`` and not tried again: it was
    retried every round, and enough of them would have crowded out the rest."""
    counts = {"tried": 0, "learned": 0, "failed": 0}
    if case_sink is None:
        return counts
    last = (select(Event.complaint_id, func.max(Event.id).label("last_id"))
            .where(Event.kind.in_(LEARNING_OUTCOMES)).group_by(Event.complaint_id).subquery())
    ids = list(session.scalars(
        select(Complaint.id).join(last, last.c.complaint_id == Complaint.id).join(Event, Event.id == last.c.last_id)
        .where(Event.kind == "case_sink_failed", Complaint.status == Status.closed.value,
               Complaint.merged_into.is_(None)).order_by(Complaint.closed_at, Complaint.id).limit(limit)))
    session.commit()
    for cid in ids:
        c = session.get(Complaint, cid)
        case = case_record(c)
        counts["tried"] += 1
        try:
            case_sink(case)
        except Exception as exc:  # noqa: BLE001 - tried again next round
            session.rollback()
            counts["failed"] += 1
            if _unlearnable(exc):
                _learning_failed(session, session.get(Complaint, cid), exc, _now(now))
                session.commit()
                continue
            log.warning("case %s still not learned: %s: %s", cid, type(exc).__name__, exc)
            break
        _event(session, c, kind="case_learned", actor=SYSTEM, at=_now(now), from_status=c.status,
               to_status=c.status, data={"order_id": case["order_id"], "retried": True})
        session.commit()
        counts["learned"] += 1
    return counts


# The events that end an attempt to hand a closed case to the knowledge base.
LEARNING_OUTCOMES = ("case_learned", "case_sink_failed", "case_not_learnable")


def _unlearnable(exc: Exception) -> bool:
    """The knowledge base refused the case for what it is (kb.cases.CaseRejected), not because it was down."""
    return bool(getattr(exc, "permanent", False))


def _learning_failed(session: Session, c: Complaint, exc: Exception, at: datetime) -> None:
    if _unlearnable(exc):
        log.warning("closed case %s is not added to the knowledge base: %s", c.id, exc)
    _event(session, c, kind="case_not_learnable" if _unlearnable(exc) else "case_sink_failed", actor=SYSTEM, at=at,
           from_status=c.status, to_status=c.status, reason=f"{type(exc).__name__}: {exc}"[:2000])


def detect_links(session: Session, *, complaint_id: int, now: datetime | None = None,
                 duplicate_window: timedelta = dup.DUPLICATE_WINDOW,
                 relapse_window: timedelta = dup.RELAPSE_WINDOW) -> tuple[int | None, int | None]:
    """Flag ``duplicate_of`` (an open complaint, same problem and place) and ``relapse_of`` (closed recently)."""
    at = _now(now) if now is not None else utcnow()
    c = session.get(Complaint, complaint_id)
    if c is None:
        raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
    d = dup.find_duplicate(session, c, window=duplicate_window)
    r = dup.find_relapse(session, c, window=relapse_window)
    if d is None and r is None:
        session.commit()
        return None, None
    c = _lock(session, complaint_id)
    if d is not None and c.duplicate_of is None:
        c.duplicate_of, c.duplicate_score = d.complaint_id, round(d.score, 1)
        _event(session, c, kind="flag_duplicate", actor=SYSTEM, at=at, from_status=c.status, to_status=c.status,
               reason=f"疑似重复件：与投诉 {d.complaint_id} 同一地点同一问题",
               data={"duplicate_of": d.complaint_id, "text_score": d.text_score, "place_score": d.place_score})
    if r is not None and c.relapse_of is None:
        c.relapse_of, c.relapse_score = r.complaint_id, round(r.score, 1)
        prev = session.get(Complaint, r.complaint_id)
        # The closure this complaint follows, as it was then (the case may be reopened and closed again later).
        _event(session, c, kind="flag_relapse", actor=SYSTEM, at=at, from_status=c.status, to_status=c.status,
               reason=f"反弹：投诉 {r.complaint_id} 办结后同一地点再次反映",
               data={"relapse_of": r.complaint_id, "text_score": r.text_score, "place_score": r.place_score,
                     "closed_at": prev.closed_at if prev else None, "result": prev.result if prev else None})
    _flush(session)
    session.commit()
    return c.duplicate_of, c.relapse_of


# ------------------------------------------------------------------------------------------- transitions
def assign(session: Session, *, complaint_id: int, actor: str, unit_type: str | None = None,
           pollution_type: str | None = None, subtype: str | None = None, urgency: str | None = None,
           note: str | None = None, unit_namer: UnitNamer | None = None, now: datetime | None = None,
           sla: Sla | None = None) -> Assignment:
    """received/triaged/returned → assigned. No labels given = accept the suggestion; any label = override.

    The accept/override is kept as labelled feedback on the Assignment (suggested vs. final, who, when).
    """
    now = _now(now)
    sla = sla or get_sla()
    c = _lock(session, complaint_id)
    allowed = (Status.received.value, Status.triaged.value, Status.returned.value)
    if c.status not in allowed or c.merged_into is not None:
        raise _illegal("assign", c)
    s = session.scalars(select(Suggestion).where(Suggestion.complaint_id == c.id)
                        .order_by(Suggestion.id.desc()).limit(1)).first()
    pollution_type = _optional_text(pollution_type, "pollution_type", 64)
    subtype = _optional_text(subtype, "subtype", 64)
    unit_type = _optional_text(unit_type, "unit_type", 64)
    if urgency is not None and urgency not in sla.policy.urgency:
        raise InvalidInput(f"紧急程度只能是 {'/'.join(sla.policy.urgency)} / unknown urgency")
    # Labels a dispatcher already set (before a return) stand unless changed again; else the suggestion's.
    if c.pollution_type:
        base_pt, base_st = c.pollution_type, c.subtype
    else:
        base_pt, base_st = (s.pollution_type, s.subtype) if s is not None else (None, None)
    base_ut = s.unit_type if s is not None else c.unit_type
    if (unit_type or base_ut) is None or (pollution_type or base_pt) is None:
        raise InvalidInput("尚无分类建议，请选择污染类型和承办单位 / "
                           "no suggestion to accept yet: give pollution_type and unit_type")
    pt = pollution_type or base_pt
    if subtype is not None:
        st = subtype
    elif pt == base_pt and base_st:
        st = base_st
    else:
        st = _default_subtype(pt)
    ut = unit_type or base_ut
    _check_labels(pt, st, ut)
    if s is not None and ut == s.unit_type and s.unit_name:
        name = s.unit_name
    else:
        name = None
        if unit_namer is not None:
            try:
                name = unit_namer(ut)
            except Exception:  # noqa: BLE001 - an unnamed unit is still assignable
                log.exception("unit_namer failed for %s", ut)
        name = name or default_unit_name(ut)
    accepted = s is not None and (pt, st, ut) == (s.pollution_type, s.subtype, s.unit_type)
    if urgency is None:
        urgency = "urgent" if st in sla.policy.urgent_subtypes else c.urgency
    d = sla.compute(now, urgency=urgency, pollution_type=pt, subtype=st, occurred_at=c.occurred_at, text=c.text)
    prev = c.status
    a = Assignment(
        complaint_id=c.id, unit_type=ut, unit_name=name, pollution_type=pt, subtype=st, assigned_at=now,
        assigned_by=actor, deadline=d.due, contact_deadline=d.contact_due, deadline_note=d.note, sla_rule=d.rule,
        accepted_suggestion=accepted, suggested_pollution_type=s.pollution_type if s else None,
        suggested_subtype=s.subtype if s else None, suggested_unit_type=s.unit_type if s else None,
        suggestion_id=s.id if s else None, note=_optional_text(note, "note", 2000),
        reason="reassign" if prev == Status.returned.value else "assign")
    session.add(a)
    c.status = Status.assigned.value
    c.pollution_type, c.subtype, c.unit_type, c.unit_name = pt, st, ut, name
    c.urgency = urgency
    c.deadline, c.deadline_note = d.due, d.note
    c.assign_count = (c.assign_count or 0) + 1
    _event(session, c, kind=a.reason, actor=actor, at=now, from_status=prev, to_status=c.status, reason=a.note,
           data={"unit_type": ut, "unit_name": name, "pollution_type": pt, "subtype": st,
                 "accepted_suggestion": accepted, "deadline": d.due, "deadline_note": d.note, "sla_rule": d.rule,
                 "suggested": {"pollution_type": a.suggested_pollution_type, "subtype": a.suggested_subtype,
                               "unit_type": a.suggested_unit_type} if s else None})
    _flush(session)
    return a


def _active_assignment(session: Session, c: Complaint) -> Assignment | None:
    return session.scalars(select(Assignment).where(Assignment.complaint_id == c.id, Assignment.ended_at.is_(None))
                           .order_by(Assignment.id.desc()).limit(1)).first()


def return_(session: Session, *, complaint_id: int, actor: str, reason: str,
            now: datetime | None = None) -> Complaint:
    """assigned → returned (退单): the unit sends the complaint back to the dispatcher, with a reason."""
    now = _now(now)
    c = _lock(session, complaint_id)
    if c.status != Status.assigned.value:
        raise _illegal("return", c)
    reason_v = _require_text(reason, "reason", "退单理由", 2000)
    a = _active_assignment(session, c)
    _mark_received(session, c, a, actor=actor, now=now, by_action="return")
    _lapse_request(session, c, a, actor=actor, now=now, why="已退单 / returned")
    if a is not None:
        a.ended_at, a.end_reason = now, "returned"
    prev = c.status
    c.status = Status.returned.value
    c.return_count = (c.return_count or 0) + 1
    _event(session, c, kind="return", actor=actor, at=now, from_status=prev, to_status=c.status, reason=reason_v,
           data={"unit_type": a.unit_type if a else None, "unit_name": a.unit_name if a else None})
    _flush(session)
    return c


def _later_deadline(a: Assignment, c: Complaint, *, deadline: datetime | str | None, working_days: int | None,
                    now: datetime, sla: Sla) -> tuple[datetime, str | None]:
    """The new deadline an extension asks for, checked: exactly one of deadline / working_days, later than the
    current one, within a year, and the assignment's extension limit not reached."""
    if (deadline is None) == (working_days is None):
        raise InvalidInput("请填写新的期限或延长的工作日数（二者选一） / give exactly one of deadline or working_days")
    _check_extension_limit(a, c, sla)
    if now > a.deadline:
        # 延期 is asked for before the time runs out; granted afterwards it would turn a late case into an
        # on-time one in 按时办结率 and hide it from 超期未办结.
        raise IllegalTransition(f"已超过办理期限 {to_local(a.deadline):%Y-%m-%d %H:%M}，不能再延期；超期记录保留，"
                                f"请尽快办结 / the deadline has passed: an extension now would hide the lateness",
                                status=c.status, deadline=a.deadline.isoformat())
    if working_days is not None:
        if working_days < 1 or working_days > 60:
            raise InvalidInput("延长的工作日数须在 1 到 60 之间 / working_days must be 1..60")
        new, note = sla.add_working_days(a.deadline, working_days)
    else:
        try:
            new = parse_deadline(deadline)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"无法识别的期限 {deadline!r} / unparseable deadline") from exc
        if new > now + MAX_EXTENSION:
            raise InvalidInput("新期限不能超过一年 / the new deadline must be within a year")
        note = sla.note_for(new, now)
    if new <= a.deadline:
        raise InvalidInput("新期限须晚于原期限 / the new deadline must be later than the current one",
                           current_deadline=a.deadline.isoformat())
    return new, note


def _apply_extension(session: Session, c: Complaint, a: Assignment, *, new: datetime, note: str | None,
                     actor: str, reason: str, now: datetime, data: dict[str, Any]) -> None:
    old = a.deadline
    a.deadline, a.deadline_note = new, note
    a.extensions = (a.extensions or 0) + 1
    c.deadline, c.deadline_note = new, note
    c.extension_count = (c.extension_count or 0) + 1
    _event(session, c, kind="extend", actor=actor, at=now, from_status=c.status, to_status=c.status,
           reason=reason, data={"old_deadline": old, "new_deadline": new, "note": note,
                                "extensions": a.extensions, **data})


def _lapse_request(session: Session, c: Complaint, a: Assignment | None, *, actor: str, now: datetime,
                   why: str) -> None:
    """A pending extension request that something else made moot (a reply, a return, a closure, a merge, a
    deadline the dispatcher set directly) lapses, with an event: the trail shows no request left undecided."""
    if a is None or a.extension_requested_at is None:
        return
    _event(session, c, kind="extension_lapsed", actor=actor, at=now, from_status=c.status, to_status=c.status,
           reason=why, data={"requested_by": a.extension_requested_by,
                             "requested_deadline": a.extension_request_deadline,
                             "request_reason": a.extension_request_reason})
    _clear_request(a)


def _clear_request(a: Assignment) -> None:
    a.extension_requested_at = a.extension_requested_by = None
    a.extension_request_reason = a.extension_request_deadline = None


def _check_extension_limit(a: Assignment, c: Complaint, sla: Sla) -> None:
    if a.extensions >= sla.policy.max_extensions:
        raise IllegalTransition(f"已延期 {a.extensions} 次，达到上限 / extension limit "
                                f"({sla.policy.max_extensions}) reached", status=c.status)


def _open_assignment(session: Session, c: Complaint, action: str) -> Assignment:
    if c.status != Status.assigned.value:
        raise _illegal(action, c)
    a = _active_assignment(session, c)
    if a is None:
        raise _illegal(action, c)
    return a


def extend(session: Session, *, complaint_id: int, actor: str, reason: str,
           deadline: datetime | str | None = None, working_days: int | None = None,
           now: datetime | None = None, sla: Sla | None = None) -> Assignment:
    """assigned → assigned (延期): the dispatcher grants a later deadline, with a reason; counted, limited by
    ``max_extensions``. A unit asks for one with ``request_extension``."""
    now = _now(now)
    sla = sla or get_sla()
    c = _lock(session, complaint_id)
    a = _open_assignment(session, c, "extend")
    reason_v = _require_text(reason, "reason", "延期理由", 2000)
    new, note = _later_deadline(a, c, deadline=deadline, working_days=working_days, now=now, sla=sla)
    _apply_extension(session, c, a, new=new, note=note, actor=actor, reason=reason_v, now=now,
                     data={"working_days": working_days})
    _lapse_request(session, c, a, actor=actor, now=now, why="调度员已直接延期 / extended directly")
    _flush(session)
    return a


def request_extension(session: Session, *, complaint_id: int, actor: str, reason: str,
                      deadline: datetime | str | None = None, working_days: int | None = None,
                      now: datetime | None = None, sla: Sla | None = None) -> Assignment:
    """assigned → assigned (延期申请): the unit asks for a later deadline with a reason; the deadline moves only
    when the dispatcher approves (``decide_extension``). One request at a time."""
    now = _now(now)
    sla = sla or get_sla()
    c = _lock(session, complaint_id)
    a = _open_assignment(session, c, "request_extension")
    if a.extension_requested_at is not None:
        raise IllegalTransition("已有待审批的延期申请 / an extension request is already waiting for a decision",
                                status=c.status)
    reason_v = _require_text(reason, "reason", "延期理由", 2000)
    new, note = _later_deadline(a, c, deadline=deadline, working_days=working_days, now=now, sla=sla)
    _mark_received(session, c, a, actor=actor, now=now, by_action="request_extension")
    a.extension_requested_at, a.extension_requested_by = now, actor
    a.extension_request_reason, a.extension_request_deadline = reason_v, new
    _event(session, c, kind="extension_requested", actor=actor, at=now, from_status=c.status, to_status=c.status,
           reason=reason_v, data={"deadline": a.deadline, "requested_deadline": new, "note": note,
                                  "working_days": working_days})
    _flush(session)
    return a


def decide_extension(session: Session, *, complaint_id: int, actor: str, approve: bool,
                     reason: str | None = None, now: datetime | None = None, sla: Sla | None = None) -> Assignment:
    """The dispatcher approves the unit's pending extension request (the deadline moves, counted as 延期) or
    refuses it (a reason is required; the deadline stands)."""
    now = _now(now)
    sla = sla or get_sla()
    c = _lock(session, complaint_id)
    a = _open_assignment(session, c, "decide_extension")
    if a.extension_requested_at is None:
        raise IllegalTransition("没有待审批的延期申请 / no extension request is waiting", status=c.status)
    asked = {"requested_by": a.extension_requested_by, "requested_at": a.extension_requested_at,
             "request_reason": a.extension_request_reason, "requested_deadline": a.extension_request_deadline}
    if approve:
        _check_extension_limit(a, c, sla)
        new = a.extension_request_deadline
        if new <= a.deadline:
            raise IllegalTransition("申请的期限已不晚于现期限 / the requested deadline is no longer later than the "
                                    "current one", status=c.status)
        _apply_extension(session, c, a, new=new, note=sla.note_for(new, now), actor=actor,
                         reason=a.extension_request_reason or "", now=now,
                         data={**asked, "approved_by": actor, "decision_note": _optional_text(reason, "reason", 2000)})
    else:
        reason_v = _require_text(reason, "reason", "不同意延期的理由", 2000)
        _event(session, c, kind="extension_denied", actor=actor, at=now, from_status=c.status,
               to_status=c.status, reason=reason_v, data=asked)
    _clear_request(a)
    _flush(session)
    return a


# ------------------------------------------------------------------------------------ receipt and contact
def _mark_received(session: Session, c: Complaint, a: Assignment | None, *, actor: str, now: datetime,
                   by_action: str | None = None) -> None:
    """Record the unit's receipt (签收) of the dispatch in force, once. ``by_action``: the unit acted on the case
    (replied, returned it, asked for time, contacted the complainant) without signing for it first, which
    shows it had it; that action's own event is the record, so no 签收 event is added."""
    if a is None or a.received_at is not None:
        return
    a.received_at, a.received_by = now, actor
    if by_action is None:
        _event(session, c, kind="acknowledge", actor=actor, at=now, from_status=c.status, to_status=c.status,
               data={"unit_type": a.unit_type, "unit_name": a.unit_name, "assigned_at": a.assigned_at})


def acknowledge(session: Session, *, complaint_id: int, actor: str, now: datetime | None = None) -> Assignment:
    """assigned → assigned (签收): the unit confirms it has received the dispatch. Once per dispatch."""
    now = _now(now)
    c = _lock(session, complaint_id)
    a = _open_assignment(session, c, "acknowledge")
    if a.received_at is not None:
        raise IllegalTransition(f"本次派单已于 {to_local(a.received_at):%Y-%m-%d %H:%M} 由 {a.received_by} 签收 / "
                                f"this dispatch was already acknowledged", status=c.status)
    _mark_received(session, c, a, actor=actor, now=now)
    _flush(session)
    return a


def record_contact(session: Session, *, complaint_id: int, actor: str, note: str,
                   contacted_at: datetime | str | None = None, now: datetime | None = None) -> Assignment:
    """assigned → assigned (先行联系): the unit records its first contact with the complainant, how and when
    (``contacted_at`` defaults to now; staff often log a call afterwards). Checked against the dispatch's
    first-contact deadline; implies receipt. Once per dispatch."""
    now = _now(now)
    c = _lock(session, complaint_id)
    a = _open_assignment(session, c, "record_contact")
    if a.contacted_at is not None:
        raise IllegalTransition(f"本次派单已于 {to_local(a.contacted_at):%Y-%m-%d %H:%M} 登记先行联系 / first "
                                f"contact already recorded for this dispatch", status=c.status)
    note_v = _require_text(note, "note", "联系情况（方式、结果）", 2000)
    if contacted_at is None or contacted_at == "":
        at = now
    else:
        try:
            at = to_local(contacted_at if isinstance(contacted_at, datetime)
                          else datetime.fromisoformat(str(contacted_at).strip())).astimezone(now.tzinfo)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"无法识别的联系时间 {contacted_at!r}（例：2026-11-30 09:30） / unparseable "
                               f"contacted_at") from exc
        if at > now + FUTURE_TOLERANCE:
            raise InvalidInput("联系时间不能晚于现在 / contacted_at is in the future")
        if at < a.assigned_at:
            raise InvalidInput(f"联系时间早于派单时间 {to_local(a.assigned_at):%Y-%m-%d %H:%M} / contacted_at is "
                               f"before the dispatch", assigned_at=a.assigned_at.isoformat())
    _mark_received(session, c, a, actor=actor, now=now, by_action="record_contact")
    a.contacted_at, a.contacted_by, a.contact_note = at, actor, note_v
    on_time = a.contact_deadline is None or at <= a.contact_deadline
    _event(session, c, kind="contact", actor=actor, at=now, from_status=c.status, to_status=c.status,
           reason=note_v, data={"contacted_at": at, "contact_deadline": a.contact_deadline, "on_time": on_time})
    _flush(session)
    return a


def _check_result(result: str | None) -> str:
    r = (result or "").strip()
    if r not in RESULTS:
        raise InvalidInput(f"核查结果只能是 {'、'.join(RESULTS)} / result must be one of {', '.join(RESULTS)}")
    return r


def _record_reply(session: Session, c: Complaint, *, reply: str, result: str, actor: str, now: datetime,
                  approved: bool, generator: str | None = None) -> ReplyDraft:
    """The reply as sent: approves the latest draft when unchanged, otherwise stores the edited text."""
    latest = session.scalars(select(ReplyDraft).where(ReplyDraft.complaint_id == c.id)
                             .order_by(ReplyDraft.id.desc()).limit(1)).first()
    if generator is None and latest is not None and latest.text.strip() == reply.strip():
        latest.approved = latest.approved or approved
        latest.result = result
        return latest
    rd = ReplyDraft(complaint_id=c.id, created_at=now, created_by=actor, text=reply, citations=[],
                    generator=generator or "staff", result=result, approved=approved)
    session.add(rd)
    return rd


def submit_reply(session: Session, *, complaint_id: int, actor: str, reply: str, result: str,
                 now: datetime | None = None) -> Complaint:
    """assigned → replied: the unit's reply and finding, waiting for the dispatcher's approval (close)."""
    now = _now(now)
    c = _lock(session, complaint_id)
    if c.status != Status.assigned.value:
        raise _illegal("reply", c)
    reply_v = _require_text(reply, "reply", "答复内容")
    result_v = _check_result(result)
    _record_reply(session, c, reply=reply_v, result=result_v, actor=actor, now=now, approved=False)
    a = _active_assignment(session, c)
    _mark_received(session, c, a, actor=actor, now=now, by_action="reply")
    if a is not None:
        a.replied_at = now
    # The reply ends the unit's need for time (else the request would come back with a 驳回).
    _lapse_request(session, c, a, actor=actor, now=now, why="已提交答复 / replied")
    prev = c.status
    c.status, c.reply, c.result = Status.replied.value, reply_v, result_v
    _event(session, c, kind="reply", actor=actor, at=now, from_status=prev, to_status=c.status,
           data={"result": result_v})
    _flush(session)
    return c


def reject_reply(session: Session, *, complaint_id: int, actor: str, reason: str,
                 now: datetime | None = None) -> Complaint:
    """replied → assigned (驳回): the dispatcher's review sends the unit's reply back with a reason, to the same
    unit under the same deadline. The reply stays among the drafts; no closure is recorded (a close and reopen
    would count a false 办结 and a 重办)."""
    now = _now(now)
    c = _lock(session, complaint_id)
    if c.status != Status.replied.value:
        raise _illegal("reject_reply", c)
    reason_v = _require_text(reason, "reason", "驳回理由", 2000)
    prev = c.status
    rejected = {"reply": c.reply, "result": c.result}
    c.status, c.reply, c.result = Status.assigned.value, None, None
    a = _active_assignment(session, c)
    if a is not None:
        a.replied_at = None  # the unit's work is not done until a reply stands
    _event(session, c, kind="reject_reply", actor=actor, at=now, from_status=prev, to_status=c.status,
           reason=reason_v, data=rejected)
    _flush(session)
    return c


def case_record(c: Complaint) -> dict[str, Any]:
    """What the knowledge base learns from a closed complaint (triage.kb.cases.upsert_case)."""
    return {
        "order_id": c.external_id or f"triage-{c.id}",
        "text": c.text,
        "pollution_type": c.pollution_type or "",
        "subtype": c.subtype or "",
        "unit_type": c.unit_type or "",
        "unit_raw": c.unit_name or "",
        "reply": c.reply or "",
        "occurred_at": (c.occurred_at or c.received_at).astimezone(TZ).isoformat(),
        "address": c.address or "",
        "source": "closed",
    }


def close(session: Session, *, complaint_id: int, actor: str, reply: str | None = None,
          result: str | None = None, case_sink: CaseSink | None = None,
          now: datetime | None = None) -> Complaint:
    """assigned/replied → closed (办结). Merged children close with the parent's reply and result.

    The closed case is handed to ``case_sink`` (the knowledge base); a sink failure is logged and recorded as
    an event, never undoes the closure.
    """
    now = _now(now)
    c = _lock(session, complaint_id)
    if c.status not in (Status.assigned.value, Status.replied.value):
        raise _illegal("close", c)
    if c.status == Status.replied.value:
        reply_v = _require_text(reply, "reply", "答复内容") if reply is not None else c.reply
        result_v = _check_result(result) if result is not None else c.result
    else:
        reply_v = _require_text(reply, "reply", "答复内容")
        result_v = _check_result(result)
    _record_reply(session, c, reply=reply_v, result=result_v, actor=actor, now=now, approved=True)
    a = _active_assignment(session, c)
    _lapse_request(session, c, a, actor=actor, now=now, why="已办结 / closed")
    if a is not None:
        a.ended_at, a.end_reason = now, "closed"
    prev = c.status
    c.status, c.reply, c.result, c.closed_at = Status.closed.value, reply_v, result_v, now
    c.first_closed_at = c.first_closed_at or now
    on_time = c.deadline is None or now <= c.deadline
    _event(session, c, kind="close", actor=actor, at=now, from_status=prev, to_status=c.status,
           data={"result": result_v, "deadline": c.deadline, "on_time": on_time})
    children = session.scalars(select(Complaint).where(Complaint.merged_into == c.id,
                                                       Complaint.status == Status.merged.value)
                               .with_for_update()).all()
    for child in children:
        child.status, child.reply, child.result, child.closed_at = Status.closed.value, reply_v, result_v, now
        child.first_closed_at = child.first_closed_at or now
        child.pollution_type = child.pollution_type or c.pollution_type
        child.subtype = child.subtype or c.subtype
        child.unit_type, child.unit_name = child.unit_type or c.unit_type, child.unit_name or c.unit_name
        _record_reply(session, child, reply=reply_v, result=result_v, actor=actor, now=now, approved=True,
                      generator=f"merged:{c.id}")
        _event(session, child, kind="close", actor=actor, at=now, from_status=Status.merged.value,
               to_status=Status.closed.value, reason=f"随主件 {c.id} 办结 / closed with parent {c.id}",
               data={"parent_id": c.id, "result": result_v})
    _flush(session)
    if case_sink is not None:
        case = case_record(c)
        try:
            case_sink(case)
            _event(session, c, kind="case_learned", actor=SYSTEM, at=now, from_status=c.status,
                   to_status=c.status, data={"order_id": case["order_id"]})
        except Exception as exc:  # noqa: BLE001 - the knowledge base is best effort
            if not _unlearnable(exc):
                log.exception("case sink failed for complaint %s", c.id)
            _learning_failed(session, c, exc, now)
        _flush(session)
    return c


def reopen(session: Session, *, complaint_id: int, actor: str, reason: str, unit_type: str | None = None,
           unit_namer: UnitNamer | None = None, now: datetime | None = None, sla: Sla | None = None) -> Assignment:
    """closed → assigned (重办): a new assignment (same unit unless given) with a fresh deadline; counted."""
    now = _now(now)
    sla = sla or get_sla()
    c = _lock(session, complaint_id)
    if c.status != Status.closed.value:
        raise _illegal("reopen", c)
    if c.merged_into is not None:
        raise IllegalTransition(f"该件已并入投诉 {c.merged_into}，请重办主件 / merged complaint: reopen the parent "
                                f"{c.merged_into}", status=c.status, parent_id=c.merged_into)
    reason_v = _require_text(reason, "reason", "重办理由", 2000)
    last = session.scalars(select(Assignment).where(Assignment.complaint_id == c.id)
                           .order_by(Assignment.id.desc()).limit(1)).first()
    ut = _optional_text(unit_type, "unit_type", 64) or c.unit_type or (last.unit_type if last else None)
    if ut is None:
        raise InvalidInput("请选择承办单位 / give unit_type")
    if c.pollution_type:
        _check_labels(c.pollution_type, c.subtype, ut)
    if last is not None and ut == last.unit_type:
        name = last.unit_name
    else:
        name = None
        if unit_namer is not None:
            try:
                name = unit_namer(ut)
            except Exception:  # noqa: BLE001
                log.exception("unit_namer failed for %s", ut)
        name = name or default_unit_name(ut)
    d = sla.compute(now, urgency=c.urgency, pollution_type=c.pollution_type, subtype=c.subtype,
                    occurred_at=c.occurred_at, text=c.text)
    a = Assignment(complaint_id=c.id, unit_type=ut, unit_name=name, pollution_type=c.pollution_type,
                   subtype=c.subtype, assigned_at=now, assigned_by=actor, deadline=d.due,
                   contact_deadline=d.contact_due, deadline_note=d.note, sla_rule=d.rule,
                   accepted_suggestion=False, note=reason_v, reason="reopen")
    session.add(a)
    prev = c.status
    old = {"closed_at": c.closed_at, "result": c.result}
    c.status, c.closed_at, c.result, c.reply = Status.assigned.value, None, None, None
    c.unit_type, c.unit_name = ut, name
    c.deadline, c.deadline_note = d.due, d.note
    c.reopen_count = (c.reopen_count or 0) + 1
    c.assign_count = (c.assign_count or 0) + 1
    _event(session, c, kind="reopen", actor=actor, at=now, from_status=prev, to_status=c.status, reason=reason_v,
           data={**old, "unit_type": ut, "deadline": d.due, "reopen_count": c.reopen_count})
    # Duplicates that closed with this complaint follow it again: merged until it closes anew, with the new reply.
    children = session.scalars(select(Complaint).where(Complaint.merged_into == c.id,
                                                       Complaint.status == Status.closed.value)
                               .with_for_update()).all()
    for child in children:
        child.status, child.closed_at, child.result, child.reply = Status.merged.value, None, None, None
        child.reopen_count = (child.reopen_count or 0) + 1
        _event(session, child, kind="reopen", actor=actor, at=now, from_status=Status.closed.value,
               to_status=Status.merged.value, reason=f"随主件 {c.id} 重办 / reopened with parent {c.id}",
               data={"parent_id": c.id})
    _flush(session)
    return a


def merge(session: Session, *, complaint_id: int, parent_id: int, actor: str, reason: str | None = None,
          now: datetime | None = None) -> Complaint:
    """open → merged: this complaint (a duplicate) follows ``parent_id``'s outcome from now on."""
    now = _now(now)
    if complaint_id == parent_id:
        raise InvalidInput("不能与自身合并 / cannot merge a complaint into itself")
    # Lock both rows in id order: two merges in opposite directions cannot deadlock.
    first, second = sorted((complaint_id, parent_id))
    locked = {first: _lock(session, first), second: _lock(session, second)}
    c, parent = locked[complaint_id], locked[parent_id]
    open_values = {s.value for s in OPEN_STATUSES}
    if c.status not in open_values or c.merged_into is not None:
        raise _illegal("merge", c)
    if parent.status not in open_values or parent.merged_into is not None:
        raise IllegalTransition(
            f"主件 {parent_id} 状态为“{STATUS_ZH.get(parent.status, parent.status)}”，不能并入 / "
            f"parent {parent_id} is '{parent.status}': merge only into an open complaint", status=parent.status)
    a = _active_assignment(session, c)
    _lapse_request(session, c, a, actor=actor, now=now, why="已合并 / merged")
    if a is not None:
        a.ended_at, a.end_reason = now, "merged"
    prev = c.status
    c.status, c.merged_into, c.duplicate_of = Status.merged.value, parent.id, parent.id
    reason_v = _optional_text(reason, "reason", 2000)
    _event(session, c, kind="merge", actor=actor, at=now, from_status=prev, to_status=c.status, reason=reason_v,
           data={"parent_id": parent.id})
    _event(session, parent, kind="merge_child", actor=actor, at=now, from_status=parent.status,
           to_status=parent.status, reason=reason_v, data={"child_id": c.id})
    # Children of the merged complaint now follow the new parent.
    grandchildren = session.scalars(select(Complaint).where(Complaint.merged_into == c.id)).all()
    for g in grandchildren:
        g.merged_into, g.duplicate_of = parent.id, parent.id
        _event(session, g, kind="merge", actor=actor, at=now, from_status=g.status, to_status=g.status,
               reason=f"原主件 {c.id} 并入 {parent.id}", data={"parent_id": parent.id, "via": c.id})
    _flush(session)
    return c


def draft(session: Session, *, complaint_id: int, actor: str, drafter: Drafter, findings: str | None = None,
          result: str | None = None, actions: str | None = None, now: datetime | None = None) -> ReplyDraft:
    """Ask the drafter for a reply (no state change); the draft is stored for the staff to edit and approve."""
    from triage.drafting.types import Draft, DraftRequest

    now = _now(now)
    c = _lock(session, complaint_id)
    if c.status in (Status.closed.value, Status.merged.value):
        raise _illegal("draft", c)
    if result is not None:
        result = _check_result(result)
    s = c.suggestion
    req = DraftRequest(
        complaint_text=c.text, occurred_at=c.occurred_at, address=c.address,
        pollution_type=c.pollution_type or (s.pollution_type if s else None),
        subtype=c.subtype or (s.subtype if s else None),
        unit_type=c.unit_type or (s.unit_type if s else None),
        unit_name=c.unit_name or (s.unit_name if s else None),
        findings=_optional_text(findings, "findings", MAX_TEXT), result=result,
        actions=_optional_text(actions, "actions", MAX_TEXT))
    session.commit()  # do not hold the row lock while a model writes
    try:
        out = drafter(req)
        if not isinstance(out, Draft):
            out = Draft.model_validate(out if isinstance(out, dict) else out.model_dump())
    except Exception as exc:  # noqa: BLE001
        log.exception("drafting failed for complaint %s", complaint_id)
        raise DraftingFailed(f"答复起草失败，请稍后重试或手工撰写 / drafting failed: {type(exc).__name__}") from exc
    c = _lock(session, complaint_id)
    rd = ReplyDraft(complaint_id=c.id, created_at=now, created_by=actor, text=out.text,
                    citations=[x.model_dump(mode="json") for x in out.citations], generator=out.generator,
                    prompt_version=out.prompt_version,
                    quality=out.quality.model_dump(mode="json") if out.quality else None, notice=out.notice,
                    findings=req.findings, actions=req.actions, result=result, approved=False)
    session.add(rd)
    _flush(session)
    _event(session, c, kind="draft", actor=actor, at=now, from_status=c.status, to_status=c.status,
           data={"draft_id": rd.id, "generator": out.generator, "prompt_version": out.prompt_version})
    _flush(session)
    return rd


# ------------------------------------------------------------------------------------------------- queue
@dataclass
class QueueEntry:
    complaint: Complaint
    overdue: bool
    due_soon: bool
    low_confidence: bool
    priority: int
    priority_reason: str
    # 先行联系超时: the first-contact deadline passed with no contact recorded. A badge, not a priority: an office
    # that does not log contacts would otherwise see every case jump the queue a day after dispatch.
    contact_overdue: bool = False
    unacknowledged: bool = False  # 待签收: dispatched, the unit has not signed for it yet
    reply_rejected: bool = False  # 答复被驳回: the unit's reply was sent back and not yet replaced


# A unit suggestion below this is flagged like a doubtful type: a social-insurance question at 99% "not ours"
# but 54% 派出所 was offered for bulk dispatch (the suggestion's own flag looks at the type only).
LOW_UNIT_CONFIDENCE = 0.6


def unit_doubtful(s: Suggestion | None) -> bool:
    return s is not None and (s.unit_confidence or 0) < LOW_UNIT_CONFIDENCE


def suggestion_doubtful(s: Suggestion | None) -> bool:
    """The model is unsure of the type or of the unit: a person reviews it, and it is not bulk-dispatched."""
    return s is not None and (s.low_confidence or unit_doubtful(s))

PRIORITY_REASONS = {0: "已超期", 1: "临期", 2: "待人工处理（退单、答复待审核、延期申请、低置信度或未能自动分拣）",
                    3: "紧急件", 4: "常规"}


def _person_reason(c: Complaint, doubtful: bool, rejected: bool) -> str:
    """What a person must do about it, rather than the list of every reason a case may need one."""
    if c.status == Status.received.value:
        return "未能自动分拣，待人工派单"
    if c.status == Status.returned.value:
        return "已退单，待重新派单"
    if c.status == Status.replied.value:
        return "答复待审核"
    if c.extension_pending:
        return "延期申请待审批"
    if rejected:
        return "答复被驳回，待重新办理"
    if doubtful:
        return "置信度低，待人工审核"
    return PRIORITY_REASONS[2]


def _rejected_replies(session: Session, ids: list[int]) -> set[int]:
    """Of these complaints, those whose latest reply was sent back (驳回) and not yet replaced: the unit must see
    that, or the case reads 常规 in its queue."""
    if not ids:
        return set()
    last: dict[int, str] = {}
    for cid, kind in session.execute(select(Event.complaint_id, Event.kind).where(
            Event.complaint_id.in_(ids), Event.kind.in_(("reply", "reject_reply"))).order_by(Event.id)):
        last[cid] = kind
    return {cid for cid, kind in last.items() if kind == "reject_reply"}


def rejection_of(c: Complaint) -> Event | None:
    """The 驳回 event a case still stands under (assigned, its latest reply sent back), for the case page."""
    if c.status != Status.assigned.value:
        return None
    last = next((e for e in reversed(c.events) if e.kind in ("reply", "reject_reply")), None)
    return last if last is not None and last.kind == "reject_reply" else None


def _queue_unit(c: Complaint) -> str | None:
    """The unit a queue filter files a complaint under: the unit working it; before dispatch, the suggested
    one. A returned case is the dispatcher's again, under no unit (its old unit no longer holds it)."""
    if c.status == Status.returned.value:
        return None
    s = c.suggestion
    return c.unit_type or (s.unit_type if s else None)


def list_queue(session: Session, *, status: str | list[str] | None = None, unit_type: str | None = None,
               limit: int = 50, now: datetime | None = None, sla: Sla | None = None) -> list[QueueEntry]:
    """Open work, most urgent first: overdue, due soon, needing a person (returned, low confidence,
    untriaged), urgent,
    then by deadline. ``status`` may be one value or a list (default: every open status)."""
    now = _now(now)
    sla = sla or get_sla()
    valid = {s.value for s in Status}
    if status is None or status == "" or status == []:
        wanted = [s.value for s in OPEN_STATUSES]
    else:
        wanted = [x.strip() for x in (status.split(",") if isinstance(status, str) else status) if x.strip()]
        bad = [x for x in wanted if x not in valid]
        if bad:
            raise InvalidInput(f"未知的状态：{', '.join(bad)} / unknown status; one of {', '.join(sorted(valid))}")
    if limit < 1 or limit > 1000:
        raise InvalidInput("limit 须在 1 到 1000 之间 / limit must be 1..1000")
    q = select(Complaint).where(Complaint.status.in_(wanted)).options(selectinload(Complaint.suggestions),
                                                                      selectinload(Complaint.assignments))
    if Status.merged.value not in wanted:
        q = q.where(Complaint.merged_into.is_(None))
    rows = session.scalars(q).all()
    rejected = _rejected_replies(session, [c.id for c in rows if c.status == Status.assigned.value])
    entries: list[QueueEntry] = []
    for c in rows:
        s = c.suggestion
        if unit_type and _queue_unit(c) != unit_type:
            continue
        open_ = c.status in {x.value for x in OPEN_STATUSES}
        overdue = open_ and sla.is_overdue(c.deadline, now)
        a = c.assignment if c.status == Status.assigned.value else None
        contact_late = a is not None and a.contact_overdue(now)
        soon = open_ and not overdue and sla.is_due_soon(c.deadline, now)
        doubtful = suggestion_doubtful(s)
        needs_person = c.status in (Status.received.value, Status.returned.value) or (
            c.status == Status.triaged.value and doubtful) or c.extension_pending or (
            c.status == Status.replied.value) or c.id in rejected  # a reply waits for review, or was sent back
        if overdue:
            p = 0
        elif soon:
            p = 1
        elif needs_person:
            p = 2
        elif c.urgency == "urgent":
            p = 3
        else:
            p = 4
        # Low confidence is the model's doubt, about the type or the unit: once a dispatcher has set the labels it
        # no longer applies.
        low = doubtful and c.pollution_type is None
        reason = _person_reason(c, doubtful, c.id in rejected) if p == 2 else PRIORITY_REASONS[p]
        entries.append(QueueEntry(c, overdue, soon, low, p, reason, contact_overdue=contact_late,
                                  unacknowledged=a is not None and a.ended_at is None and a.received_at is None,
                                  reply_rejected=c.id in rejected))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    entries.sort(key=lambda e: (e.priority, e.complaint.deadline or far, e.complaint.received_at, e.complaint.id))
    return entries[:limit]


@dataclass
class Relapse:
    complaint: Complaint
    previous: Complaint
    previous_closed_at: datetime | None  # the closure the complaint came back after
    previous_result: str | None

    @property
    def days_since_close(self) -> int | None:
        """Beijing calendar days from that closure to this complaint's receipt (0: the same day); one rule for
        the dashboard, the API and the report."""
        if self.previous_closed_at is None:
            return None
        return max(0, (to_local(self.complaint.received_at).date() - to_local(self.previous_closed_at).date()).days)


def relapse_basis(session: Session, c: Complaint) -> Relapse | None:
    """The closed case ``c`` relapses, with that case's closure as it stood when ``c`` was flagged."""
    if c.relapse_of is None:
        return None
    prev = session.get(Complaint, c.relapse_of)
    if prev is None:
        return None
    ev = session.scalars(select(Event).where(Event.complaint_id == c.id, Event.kind == "flag_relapse")
                         .order_by(Event.id.desc()).limit(1)).first()
    closed_at, result = prev.closed_at or prev.first_closed_at, prev.result
    if ev is not None and ev.data.get("closed_at"):
        closed_at = datetime.fromisoformat(ev.data["closed_at"])
        result = ev.data.get("result")
    return Relapse(c, prev, closed_at, result)


def list_relapses(session: Session, *, start: datetime, end: datetime) -> list[Relapse]:
    """Relapses among complaints received in [start, end), oldest first."""
    rows = session.scalars(select(Complaint).where(Complaint.relapse_of.is_not(None),
                                                   Complaint.merged_into.is_(None),
                                                   Complaint.received_at >= start, Complaint.received_at < end)
                           .order_by(Complaint.received_at, Complaint.id)).all()
    return [r for r in (relapse_basis(session, c) for c in rows) if r is not None]
