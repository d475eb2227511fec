"""What triage hands to the queue: the suggestion and its evidence (CONTRACT.md `suggestion`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Alternative(BaseModel):
    pollution_type: str | None = None
    subtype: str | None = None
    unit_type: str | None = None
    confidence: float


class SimilarCase(BaseModel):
    id: str
    text: str
    pollution_type: str | None = None
    subtype: str | None = None
    unit_type: str | None = None
    unit_raw: str | None = None
    reply: str | None = None
    similarity: float
    # The same place and the same kind of problem as the complaint (the relapse test of triage/queue/duplicates.py):
    # a past order of the office's history repeated. Relapses are flagged only among complaints in the queue;
    # this says so for the imported history too.
    same_place: bool = False


class CitedRegulation(BaseModel):
    law: str
    article: str  # e.g. "第八十七条"
    article_no: int | None = None
    text: str
    in_force: bool
    similarity: float
    # "digest": the text is our own summary of the article (knowledge/regulations), not the law's wording;
    # "statute": the law's text as ingested.
    source: str = "statute"


class Suggestion(BaseModel):
    pollution_type: str
    subtype: str
    unit_type: str
    unit_name: str
    confidence: float = Field(description="calibrated probability that the pollution type is right")
    unit_confidence: float
    low_confidence: bool
    alternatives: list[Alternative] = []
    unit_alternatives: list[Alternative] = []
    unit_decided_by: str = Field(description='e.g. "rule R3" or "12 similar past cases"')
    similar_cases: list[SimilarCase] = []
    regulations: list[CitedRegulation] = []
    versions: dict[str, str] = Field(default_factory=dict, description="model, taxonomy, routing, knowledge")
