"""Articles for a draft: the retriever protocol and its default implementation over the knowledge base.

A retriever is any callable ``retriever(text, on, *, k=..., subtype=...) -> list[dict]`` returning articles as
``{law, article, text, in_force}`` (extra keys such as ``article_no``, ``similarity``, ``effective``,
``repealed`` are welcome). Tests inject their own; ``triage.drafting.lawfiles.LawLibrary.retriever()`` reads
law markdown directly; ``kb_retriever`` below is the production default over Chroma's ``regulations``
collection, keeping only articles in force on the date of the facts.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

from triage.drafting.basis import all_entries, curated_for
from triage.drafting.dates import as_date
from triage.kb.regulations import article_label, article_no, in_force, law_key, normalize_law
from triage.settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "regulations"


class Retriever(Protocol):
    def __call__(self, text: str, on: date, *, k: int = 5, subtype: str | None = None) -> list[dict]: ...


def call_retriever(retriever: Callable[..., Any], text: str, on: date, *, k: int, subtype: str | None) -> list[dict]:
    """Call a retriever with the keywords it accepts; normalise what it returns to plain dicts."""
    try:
        params = inspect.signature(retriever).parameters
        takes_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {name: val for name, val in (("k", k), ("subtype", subtype)) if takes_kw or name in params}
    except (TypeError, ValueError):
        kwargs = {}
    raw = retriever(text, on, **kwargs) or []
    return [normalise_article(a, on) for a in raw if a is not None]


def normalise_article(a: Any, on: date) -> dict:
    """Accept dicts, pydantic models (e.g. CitedRegulation) or objects with the same attributes."""
    if hasattr(a, "model_dump"):
        a = a.model_dump()
    elif not isinstance(a, dict):
        a = {k: getattr(a, k) for k in ("law", "article", "article_no", "text", "in_force", "similarity")
             if hasattr(a, k)}
    d = dict(a)
    no = article_no(d.get("article_no") or d.get("article"))
    d["article_no"] = no
    if no:
        d["article"] = article_label(no)
    d["law"] = str(d.get("law", "")).strip().strip("《》")
    d.setdefault("text", "")
    if "in_force" not in d or d["in_force"] is None:
        d["in_force"] = in_force(d, on)
    return d


def _query_text(text: str, subtype: str | None) -> str:
    """Steer the search with our digest's wording for the subtype; e5 wants short, focused queries."""
    hints = [e.gist for e in curated_for(subtype, date(2100, 1, 1), general=False)[:1]] if subtype else []
    return "\n".join([*hints, (text or "")[:400]])


def kb_retriever(settings: Settings, *, store=None, embedder=None, overfetch: int = 4) -> Retriever:
    """The default: Chroma ``regulations``, filtered to articles in force on the facts' date and, for local
    regulations, to those of the configured jurisdiction's regions.

    Also fetches our digest's articles for the subtype by exact metadata (law + article_no) so the drafter can
    prefer them when the knowledge base holds them. Store and embedder are created lazily.
    """

    def retrieve(text: str, on: date, *, k: int = 5, subtype: str | None = None) -> list[dict]:
        nonlocal store, embedder
        from triage.classify.routing import get_routing
        from triage.embeddings import get_embedder
        from triage.kb.store import get_store

        routing = get_routing()

        on = as_date(on) or on
        store = store or get_store(settings)
        embedder = embedder or get_embedder(settings)
        out: list[dict] = []
        seen: set[tuple[str, int]] = set()
        for entry in curated_for(subtype, on):
            for meta, doc in _get_exact(store, entry.law, entry.article_no):
                d = normalise_article({**meta, "text": doc, "similarity": 1.0, "curated": True}, on)
                key = (law_key(d["law"]), d["article_no"])
                if d["in_force"] and key not in seen:
                    seen.add(key)
                    out.append(d)
        curated_n = len(out)
        vec = embedder.embed_query(_query_text(text, subtype))
        for hit in store.query(COLLECTION, vec, k=k * overfetch):
            d = normalise_article({**hit.metadata, "text": hit.text, "similarity": hit.similarity}, on)
            key = (law_key(d["law"]), d["article_no"])
            if not d["in_force"] or not d["article_no"] or key in seen:
                continue
            if not routing.local_rule_applies(hit.metadata, settings.jurisdiction):
                continue  # a local regulation of another place
            seen.add(key)
            out.append(d)
            if len(out) - curated_n >= k:
                break
        return out

    return retrieve


def _law_variants(law: str) -> list[str]:
    short = normalize_law(law)
    return list(dict.fromkeys([law, short, "中华人民共和国" + short]))


def _get_exact(store, law: str, no: int) -> list[tuple[dict, str]]:
    """Chunks for (law, article_no) whatever way the law's name was stored."""
    col = store.collection(COLLECTION)
    for name in _law_variants(law):
        try:
            res = col.get(where={"$and": [{"law": name}, {"article_no": no}]}, include=["metadatas", "documents"])
        except Exception as exc:  # noqa: BLE001 - metadata shape differs: semantic search still works
            log.debug("exact article lookup failed: %s", exc)
            return []
        if res.get("ids"):
            got = [(dict(m or {}), d or "") for m, d in zip(res["metadatas"], res["documents"])]
            # the statute's own words first (digest paraphrases after), then chunk order
            got.sort(key=lambda md: (md[0].get("source") == "digest", int(md[0].get("chunk") or 0)))
            return got
    return []


def kb_known_articles(store) -> Callable[[str, int], bool | None]:
    """known_articles for the quality check, backed by the knowledge base (and our verified digest)."""
    digest = {(law_key(e.law), e.article_no) for e in all_entries()}
    laws_cache: dict[str, bool] = {}

    def known(law: str, no: int) -> bool | None:
        if (law_key(law), no) in digest:
            return True
        if _get_exact(store, law, no):
            return True
        key = law_key(law)
        if key not in laws_cache:
            laws_cache[key] = any(_law_has_any(store, name) for name in _law_variants(law))
        return False if laws_cache[key] else None

    return known


def _law_has_any(store, name: str) -> bool:
    try:
        res = store.collection(COLLECTION).get(where={"law": name}, limit=1, include=[])
        return bool(res.get("ids"))
    except Exception:  # noqa: BLE001
        return False


def articles_known(articles: list[dict], extra: Callable[[str, int], bool | None] | None = None
                   ) -> Callable[[str, int], bool | None]:
    """known_articles from what was retrieved, our digest, and optionally a wider look-up."""
    keys = {(law_key(a["law"]), a["article_no"]) for a in articles if a.get("article_no")}
    keys |= {(law_key(e.law), e.article_no) for e in all_entries()}

    def known(law: str, no: int) -> bool | None:
        if (law_key(law), no) in keys:
            return True
        if extra is not None:
            try:
                return extra(law, no)
            except Exception:  # noqa: BLE001 - the knowledge base went away: cannot verify
                return None
        return False if any(k[0] == law_key(law) for k in keys) else None

    return known
