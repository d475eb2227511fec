"""The drafting interface the queue calls (POST /api/complaints/{id}/draft)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class DraftRequest(BaseModel):
    complaint_text: str
    occurred_at: datetime | None = None  # date of the facts: decides which laws are in force
    address: str | None = None
    pollution_type: str | None = None
    subtype: str | None = None
    unit_type: str | None = None
    unit_name: str | None = None
    findings: str | None = Field(default=None, description="核查情况 written by the unit's staff")
    result: str | None = Field(default=None, description="属实 / 部分属实 / 不属实")
    actions: str | None = None


class Citation(BaseModel):
    law: str
    article: str
    in_force: bool


class QualityReport(BaseModel):
    score: float
    parts: dict[str, bool]
    problems: list[str] = []


class Draft(BaseModel):
    text: str
    citations: list[Citation]
    generator: str  # "template" or "llm:<model>"
    prompt_version: str
    notice: str | None = None  # e.g. "LLM unavailable, template used"
    quality: QualityReport | None = None
