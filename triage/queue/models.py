"""The tracked work queue: complaints, their suggestions, assignments, reply drafts and the audit trail.

Times are stored in UTC and always come back timezone-aware (``UTCDateTime``), on SQLite as on PostgreSQL.
``Complaint.version`` is SQLAlchemy's version counter: an UPDATE that lost a race (two dispatchers acting on the
same complaint at once) matches no row and raises, so exactly one of them wins even where ``FOR UPDATE`` is a
no-op (SQLite).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column, relationship

from triage.db import Base


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes stored as UTC; naive values are refused (they are ambiguous)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone first")
        value = value.astimezone(UTC)
        # SQLite has no timezone type: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(str, enum.Enum):
    received = "received"  # stored; triage not (yet) successful
    triaged = "triaged"  # suggestion saved, waiting for the dispatcher
    assigned = "assigned"  # a unit works it (also after an extension or a reopen)
    returned = "returned"  # 退单: the unit sent it back to the dispatcher
    replied = "replied"  # the unit submitted its reply; waiting for approval
    closed = "closed"  # 办结
    merged = "merged"  # a duplicate merged into a parent; follows the parent's outcome


OPEN_STATUSES = (Status.received, Status.triaged, Status.assigned, Status.returned, Status.replied)
RESULTS = ("属实", "部分属实", "不属实")


# Complaints of the first-start demo set (triage.web.demo) carry this source; `triage demo clear` deletes them.
DEMO_SOURCE = "demo"


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    source: Mapped[str] = mapped_column(String(32), default="api")
    text: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(500))
    contact: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.received.value, index=True)
    urgency: Mapped[str] = mapped_column(String(16), default="normal")
    # Final labels: set by the dispatcher's accept or override at assignment.
    pollution_type: Mapped[str | None] = mapped_column(String(64))
    subtype: Mapped[str | None] = mapped_column(String(64))
    unit_type: Mapped[str | None] = mapped_column(String(64), index=True)
    unit_name: Mapped[str | None] = mapped_column(String(200))
    # duplicate_of: flagged at intake (a suggestion) or confirmed by a merge; merged_into: confirmed only.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"))
    duplicate_score: Mapped[float | None] = mapped_column(Float)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"), index=True)
    relapse_of: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"))
    relapse_score: Mapped[float | None] = mapped_column(Float)
    # The deadline in force (provisional from intake, then the assignment's, extensions included).
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_note: Mapped[str | None] = mapped_column(String(300))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(16))
    reply: Mapped[str | None] = mapped_column(Text)
    triage_attempts: Mapped[int] = mapped_column(Integer, default=0)
    triage_error: Mapped[str | None] = mapped_column(Text)
    # Counters kept with the transitions: the metrics read them instead of scanning events.
    assign_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    suggestions: Mapped[list[Suggestion]] = relationship(
        back_populates="complaint", order_by="Suggestion.id", cascade="all, delete-orphan")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="complaint", order_by="Assignment.id", cascade="all, delete-orphan")
    drafts: Mapped[list[ReplyDraft]] = relationship(
        back_populates="complaint", order_by="ReplyDraft.id", cascade="all, delete-orphan")
    events: Mapped[list[Event]] = relationship(
        back_populates="complaint", order_by="Event.id", cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version}

    @property
    def suggestion(self) -> Suggestion | None:
        return self.suggestions[-1] if self.suggestions else None

    @property
    def assignment(self) -> Assignment | None:
        return self.assignments[-1] if self.assignments else None

    @property
    def extension_pending(self) -> bool:
        """The unit's request for more time waits for the dispatcher (on the assignment in force)."""
        a = self.assignment
        return (self.status == Status.assigned.value and a is not None and a.ended_at is None
                and a.extension_requested_at is not None)

    @property
    def is_open(self) -> bool:
        return self.status in {s.value for s in OPEN_STATUSES}


class Suggestion(Base):
    """What the classifier said (triage.classify.types.Suggestion), with its evidence and versions."""

    __tablename__ = "suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pollution_type: Mapped[str] = mapped_column(String(64))
    subtype: Mapped[str] = mapped_column(String(64))
    unit_type: Mapped[str] = mapped_column(String(64))
    unit_name: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    unit_confidence: Mapped[float] = mapped_column(Float)
    low_confidence: Mapped[bool] = mapped_column(Boolean, default=False)
    alternatives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    unit_alternatives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    unit_decided_by: Mapped[str] = mapped_column(String(300), default="")
    similar_cases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    regulations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Anything else the classifier returns (future fields), kept verbatim.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    complaint: Mapped[Complaint] = relationship(back_populates="suggestions")


class Assignment(Base):
    """One dispatch to a unit. The accept/override is labelled feedback: suggested vs. final, who and when."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"), index=True)
    unit_type: Mapped[str] = mapped_column(String(64), index=True)
    unit_name: Mapped[str] = mapped_column(String(200))
    pollution_type: Mapped[str | None] = mapped_column(String(64))
    subtype: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    assigned_by: Mapped[str] = mapped_column(String(100))
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    contact_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_note: Mapped[str | None] = mapped_column(String(300))
    sla_rule: Mapped[str | None] = mapped_column(String(100))
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    accepted_suggestion: Mapped[bool] = mapped_column(Boolean, default=False)
    suggested_pollution_type: Mapped[str | None] = mapped_column(String(64))
    suggested_subtype: Mapped[str | None] = mapped_column(String(64))
    suggested_unit_type: Mapped[str | None] = mapped_column(String(64))
    suggestion_id: Mapped[int | None] = mapped_column(ForeignKey("suggestions.id"))
    note: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(16), default="assign")  # assign | reassign | reopen
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))  # returned | closed | merged
    # The unit's pending request for more time (延期申请), until the dispatcher approves or refuses it; the
    # decisions themselves are events ("extend", "extension_denied").
    extension_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_requested_by: Mapped[str | None] = mapped_column(String(100))
    extension_request_reason: Mapped[str | None] = mapped_column(Text)
    extension_request_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 签收: the unit confirmed it has the case (explicitly, or by any later action of its own on it).
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_by: Mapped[str | None] = mapped_column(String(100))
    # 先行联系: when and how the unit first reached the complainant (checked against contact_deadline).
    contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contacted_by: Mapped[str | None] = mapped_column(String(100))
    contact_note: Mapped[str | None] = mapped_column(Text)
    # When the unit submitted the reply that stands (cleared by a 驳回): a unit is judged on its own time, not on
    # the dispatcher's review.
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    complaint: Mapped[Complaint] = relationship(back_populates="assignments")

    def contact_overdue(self, now: datetime) -> bool:
        """In force, its first-contact deadline passed, and no contact recorded."""
        return (self.ended_at is None and self.contacted_at is None and self.contact_deadline is not None
                and self.contact_deadline < now)


class ReplyDraft(Base):
    __tablename__ = "reply_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    generator: Mapped[str] = mapped_column(String(100))  # template | llm:<model> | staff | merged:<parent>
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notice: Mapped[str | None] = mapped_column(String(500))
    findings: Mapped[str | None] = mapped_column(Text)
    actions: Mapped[str | None] = mapped_column(Text)  # the 处理措施 staff gave (a redraft starts from them)
    result: Mapped[str | None] = mapped_column(String(16))
    approved: Mapped[bool] = mapped_column(Boolean, default=False)

    complaint: Mapped[Complaint] = relationship(back_populates="drafts")


class Event(Base):
    """The audit trail: every state change (and every noteworthy side effect) of a complaint."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    complaint: Mapped[Complaint] = relationship(back_populates="events")


Index("ix_complaints_status_deadline", Complaint.status, Complaint.deadline)
