"""Style examples for the LLM prompt: two or three real replies to similar complaints.

An example is ``{"text": complaint, "reply": reply}``. Sources: the knowledge base's ``cases`` collection
(past orders that carry a reply), or any injected list / callable. Only the register and structure are meant
to carry over; the prompt tells the model not to reuse their facts.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from triage.drafting.quality import content_bigrams
from triage.settings import Settings

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 450
Example = dict[str, str]
ExampleSource = Iterable[Any] | Callable[..., Any] | None


def _clip(s: str, n: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[:n] + "……"


class ExamplePool:
    """A list of examples and a cheap similarity (shared character bigrams, same subtype first)."""

    def __init__(self, examples: Iterable[Example]):
        self.examples = [e for e in examples if (e.get("reply") or "").strip()]
        self._grams = [content_bigrams(e.get("text", "")) for e in self.examples]

    def select(self, text: str, *, k: int = 3, subtype: str | None = None) -> list[Example]:
        q = content_bigrams(text)
        scored = []
        for e, g in zip(self.examples, self._grams):
            sim = len(q & g) / (len(q | g) or 1)
            same = 1 if subtype and e.get("subtype") == subtype else 0
            scored.append((same, sim, e))
        scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [e for _, _, e in scored[:k]]

    @classmethod
    def from_csv(cls, path: Path, *, text_col: str = "text", reply_col: str = "reply",
                 title_col: str | None = "title") -> "ExamplePool":
        rows = []
        with open(path, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("pollution_type") == "not_environmental":
                    continue
                text = r.get(text_col, "")
                if title_col and r.get(title_col):
                    text = f"{r[title_col]}\n{text}"
                rows.append({"text": text, "reply": r.get(reply_col, ""), "subtype": r.get("subtype", "")})
        return cls(rows)


def kb_examples(settings: Settings, *, store=None, embedder=None, overfetch: int = 6) -> Callable[..., list[Example]]:
    """Nearest past cases that have a reply, from the ``cases`` collection."""

    def provide(text: str, *, k: int = 3, subtype: str | None = None) -> list[Example]:
        nonlocal store, embedder
        from triage.embeddings import get_embedder
        from triage.kb.store import get_store

        store = store or get_store(settings)
        embedder = embedder or get_embedder(settings)
        vec = embedder.embed_query(text[:500])
        out = []
        for hit in store.query("cases", vec, k=k * overfetch):
            reply = hit.metadata.get("reply") or hit.metadata.get("reply_text") or ""
            if str(reply).strip():
                out.append({"text": hit.text, "reply": str(reply), "subtype": hit.metadata.get("subtype", "")})
            if len(out) >= k:
                break
        return out

    return provide


def resolve_examples(source: ExampleSource, text: str, *, k: int = 3, subtype: str | None = None) -> list[Example]:
    """Examples from a list (ranked by similarity), a pool, or a callable; [] on any failure."""
    if source is None:
        return []
    try:
        if isinstance(source, ExamplePool):
            got = source.select(text, k=k, subtype=subtype)
        elif callable(source):
            try:
                got = source(text, k=k, subtype=subtype)
            except TypeError:
                got = source(text)
        else:
            items = [e if isinstance(e, dict) else {"text": "", "reply": str(e)} for e in source]
            got = ExamplePool(items).select(text, k=k, subtype=subtype)
    except Exception as exc:  # noqa: BLE001 - examples only improve style; drafting goes on without them
        log.warning("style examples unavailable: %s", exc)
        return []
    return [e for e in (got or []) if (e.get("reply") or "").strip()][:k]


def format_examples(examples: list[Example]) -> str:
    if not examples:
        return "（无）"
    blocks = []
    for i, e in enumerate(examples, 1):
        blocks.append(f"示例{i}\n诉求：{_clip(e.get('text', ''), 160)}\n答复：{_clip(e['reply'], MAX_REPLY_CHARS)}")
    return "\n\n".join(blocks)
