"""One search over the knowledge base, shared by ``triage kb search`` and ``GET /api/knowledge/search``."""

from __future__ import annotations

from datetime import date
from typing import Any

from triage.kb.regulations import in_force
from triage.kb.store import CASES, COLLECTIONS, REGULATIONS, KnowledgeStore

MAX_K = 50
# Long articles are split into parts and the digest may summarise an article the statutes also hold: fetch more
# than k hits and keep the best one per (law, article) so k results name k different articles.
OVERFETCH = 4


class SearchError(ValueError):
    """Bad search input; the message is user-facing (Chinese / English)."""


def validate(query: str | None, collection: str, k: int) -> str:
    q = (query or "").strip()
    if not q:
        raise SearchError("查询内容不能为空 / query must not be empty")
    if collection not in COLLECTIONS:
        raise SearchError(f"未知的知识库集合 {collection!r}，可选 regulations 或 cases / "
                          f"unknown collection {collection!r}; expected regulations or cases")
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k 必须在 1 到 {MAX_K} 之间 / k must be between 1 and {MAX_K}")
    return q


def search(query: str, *, collection: str = REGULATIONS, k: int = 5, on: date | None = None,
           store: KnowledgeStore, embedder, in_force_only: bool = False,
           jurisdiction: str | None = None, unit_type: str | None = None) -> list[dict[str, Any]]:
    """Nearest articles (or past cases) to ``query``, best first.

    Regulations: ``{id, law, article, article_no, text, in_force, similarity, part_path, source, level, effective,
    repealed, cites, title, applies_here}``; ``in_force`` is judged on ``on`` (default today); ``applies_here`` is
    False for a local regulation of a place outside ``jurisdiction``'s regions; one hit per (law, article);
    ``in_force_only`` drops articles not in force on that date. Cases: ``{id, text, pollution_type, subtype,
    unit_type, unit_raw, reply, similarity}``; ``unit_type`` limits them to the cases that unit handled (unit
    staff read only their own unit's cases: the texts hold callers' names and numbers). Raises SearchError for bad
    input.
    """
    q = validate(query, collection, k)
    on = on or date.today()
    vector = embedder.embed_query(q)
    if collection == CASES:
        where = {"unit_type": unit_type} if unit_type else None
        return [_case(h) for h in store.query(CASES, vector, k=k, where=where)]

    from triage.classify.routing import get_routing

    routing = get_routing()
    hits = store.query(REGULATIONS, vector, k=k * OVERFETCH)
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, Any]] = set()
    for h in hits:
        m = h.metadata
        key = (str(m.get("law", "")), m.get("article_no", h.id))
        if key in seen:
            continue
        force = in_force(m, on)
        if in_force_only and not force:
            continue
        seen.add(key)
        out.append({
            "id": h.id,
            "law": m.get("law", ""),
            "article": m.get("article", ""),
            "article_no": m.get("article_no"),
            "text": h.text,
            "in_force": force,
            "similarity": round(float(h.similarity), 4),
            "part_path": m.get("part_path", ""),
            "source": m.get("source", ""),
            "level": m.get("level", ""),
            "effective": m.get("effective", ""),
            "repealed": m.get("repealed", ""),
            "cites": m.get("cites", ""),
            "title": m.get("title", ""),
            "applies_here": routing.local_rule_applies(m, jurisdiction),
        })
        if len(out) >= k:
            break
    return out


def _case(h) -> dict[str, Any]:
    m = h.metadata
    return {
        "id": h.id,
        "text": h.text,
        "pollution_type": m.get("pollution_type", ""),
        "subtype": m.get("subtype", ""),
        "unit_type": m.get("unit_type", ""),
        "unit_raw": m.get("unit_raw", ""),
        "reply": m.get("reply", ""),
        "similarity": round(float(h.similarity), 4),
    }
