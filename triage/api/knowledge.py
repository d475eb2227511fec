"""``GET /api/knowledge/search``: nearest articles or past cases (the same search as ``triage kb search``).

Dependencies are cheap and lazy (the embedding model loads on the first real search, not while a request is
validated), and each is a function tests can override: ``get_kb_settings``, ``get_kb_store``,
``get_kb_embedder``.
"""

from __future__ import annotations

import logging
import threading
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from triage.auth.deps import get_unit_scope
from triage.kb.regulations import RegulationParseError, ensure_default_knowledge
from triage.kb.search import SearchError, search, validate
from triage.kb.store import REGULATIONS, KnowledgeStore, KnowledgeStoreError
from triage.settings import Settings, get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/knowledge", tags=["knowledge"])
_first_use_lock = threading.Lock()


def get_kb_settings(request: Request) -> Settings:
    return getattr(request.app.state, "settings", None) or get_settings()


def get_kb_store(settings: Settings = Depends(get_kb_settings)) -> KnowledgeStore:
    from triage.kb.store import get_store

    try:
        return get_store(settings)
    except KnowledgeStoreError as exc:
        log.error("knowledge store unavailable: %s", exc)
        raise HTTPException(503, "知识库暂不可用 / knowledge store unavailable") from exc


class LazyEmbedder:
    """Loads the process-wide embedder on first use, so a request that fails validation never pays for it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._embedder = None

    def _get(self):
        if self._embedder is None:
            from triage.embeddings import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def get_kb_embedder(settings: Settings = Depends(get_kb_settings)):
    return LazyEmbedder(settings)


class SearchParams:
    def __init__(self, q: str, collection: str, k: int, on: date):
        self.q, self.collection, self.k, self.on = q, collection, k, on


def search_params(
    q: str | None = Query(None, description="检索内容，例如投诉原文 / text to search for"),
    collection: str = Query(REGULATIONS, description="regulations（法规）或 cases（历史案例）"),
    k: int = Query(5, description="返回条数 1–50 / number of results"),
    on: str | None = Query(None, description="判断现行有效的日期 YYYY-MM-DD，默认今天 / date for in_force"),
) -> SearchParams:
    try:
        text = validate(q, collection, k)
    except SearchError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        on_date = date.fromisoformat(on) if on else date.today()
    except ValueError:
        raise HTTPException(422, f"on 日期格式应为 YYYY-MM-DD / on must be an ISO date: {on!r}") from None
    return SearchParams(text, collection, k, on_date)


@router.get("/search", summary="检索法规条文或历史案例 / nearest articles or past cases")
def knowledge_search(
    params: SearchParams = Depends(search_params),
    settings: Settings = Depends(get_kb_settings),
    store: KnowledgeStore = Depends(get_kb_store),
    embedder=Depends(get_kb_embedder),
    unit_scope: str | None = Depends(get_unit_scope),
) -> dict[str, Any]:
    """Regulations: ``results=[{law, article, article_no, text, in_force, similarity, part_path, source, …}]``
    (``in_force`` as of ``on``); cases: ``results=[{id, text, pollution_type, subtype, unit_type, similarity}]``,
    for unit staff only their own unit's cases."""
    try:
        if params.collection == REGULATIONS:
            _ensure_default_knowledge(settings, store, embedder)
        results = search(params.q, collection=params.collection, k=params.k, on=params.on, store=store,
                         embedder=embedder, jurisdiction=settings.jurisdiction, unit_type=unit_scope)
    except SearchError as exc:
        raise HTTPException(422, str(exc)) from None
    except KnowledgeStoreError as exc:
        log.error("knowledge search failed: %s", exc)
        raise HTTPException(503, "知识库暂不可用 / knowledge store unavailable") from exc
    except (OSError, RuntimeError) as exc:
        log.error("knowledge search failed: %s", exc)
        raise HTTPException(503, "检索服务暂不可用 / search unavailable") from exc
    return {"query": params.q, "collection": params.collection, "on": params.on.isoformat(), "results": results}


def _ensure_default_knowledge(settings: Settings, store: KnowledgeStore, embedder) -> None:
    with _first_use_lock:
        try:
            report = ensure_default_knowledge(settings, store, embedder)
        except (RegulationParseError, OSError) as exc:
            log.warning("default knowledge not ingested: %s", exc)
            return
        if report is not None:
            log.info("first use: ingested the regulation digest (%d chunks)", report.chunks)
