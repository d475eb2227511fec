"""Users and their API tokens (the tables behind ``TRIAGE_AUTH_MODE=token``).

Passwords are stored only as Argon2 hashes (pwdlib). API tokens are random (256 bits) and stored only as their
SHA-256 digest: the token itself is shown once, at creation, and a stolen database does not reveal it. A slow
password hash is not needed for a token of that entropy, and a digest lets one indexed look-up find it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from triage.db import Base
from triage.queue.models import UTCDateTime, utcnow


class Role(str, enum.Enum):
    dispatcher = "dispatcher"  # 调度员 (派单): intake, assign, merge, reopen, approve replies
    unit_staff = "unit_staff"  # 承办单位工作人员: only the cases assigned to its own unit kind
    manager = "manager"  # 管理人员: reads everything, metrics and reports
    admin = "admin"  # 系统管理员: users, jurisdictions, knowledge (and everything else)


ROLE_ZH = {"dispatcher": "调度员", "unit_staff": "承办单位", "manager": "管理人员", "admin": "系统管理员"}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # For unit staff: the unit kind (LABELS.md unit_type) whose cases the user sees and works.
    unit_type: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the bearer token
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")
