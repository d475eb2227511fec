"""The LLM drafting chain: prompts/reply_draft.md | ChatOpenAI → JSON → checked draft.

The model may only cite the articles it was given (or others the knowledge base knows and that are in force
on the facts' date). Anything else (an invented article, a repealed law) is removed from the structured
citations and replaced in the text by a neutral phrase, and a note says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from triage.drafting.examples import format_examples
from triage.kb.regulations import article_label, article_no, find_citations, law_dates, law_key
from triage.drafting.llm import CallStats, LLMUnavailable, bounded_call, make_chat_model, parse_draft_output
from triage.drafting.prompts import load_prompt
from triage.drafting.quality import PLACEHOLDER_RE
from triage.drafting.summary import ISSUE_LABELS
from triage.drafting.types import Citation, DraftRequest
from triage.settings import Settings

PROMPT_NAME = "reply_draft"
MIN_CHARS = 60
MAX_ARTICLE_CHARS = 300


@dataclass
class LLMDraft:
    text: str
    citations: list[Citation]
    prompt_version: str
    notes: list[str] = field(default_factory=list)
    stats: CallStats = field(default_factory=CallStats)


def format_articles(articles: list[dict]) -> str:
    if not articles:
        return "（无）"
    lines = []
    for a in articles:
        body = " ".join(str(a.get("text", "")).split())
        if len(body) > MAX_ARTICLE_CHARS:
            body = body[:MAX_ARTICLE_CHARS] + "……"
        lines.append(f"- 《{a['law']}》{a['article']}：{body}")
    return "\n".join(lines)


def prompt_inputs(req: DraftRequest, *, articles: list[dict], examples: list[dict], facts_date: date) -> dict[str, str]:
    subtype = req.subtype or ""
    ptype = req.pollution_type or (subtype.split(".")[0] if subtype else "")
    return {
        "complaint": (req.complaint_text or "").strip()[:1500],
        "facts_date": facts_date.isoformat(),
        "pollution": ISSUE_LABELS.get(subtype) or ISSUE_LABELS.get(ptype) or "未分类",
        "unit_name": req.unit_name or "（未指定，请以“我单位”行文）",
        "findings": (req.findings or "").strip() or "（未提供：请写明将赴现场核查，不要编造核查结果）",
        "result": (req.result or "").strip() or "（未提供）",
        "actions": (req.actions or "").strip() or "（未提供）",
        "articles": format_articles(articles),
        "examples": format_examples(examples),
    }


def _allowed(law: str, no: int, *, allowed_keys: set[tuple[str, int]], known, on: date) -> bool:
    if (law_key(law), no) in allowed_keys:
        return True
    exists = None
    if known is not None:
        try:
            exists = known(law, no)
        except Exception:  # noqa: BLE001
            exists = None
    if not exists:
        return False
    d = law_dates(law)
    if d is None:
        return True
    return (d.effective is None or on >= d.effective) and (d.repealed is None or on < d.repealed)


GENERIC_LAW = "相关法律法规"
_JOINER = "(?:和|与|及|以及|、|，|,)"
_REPEATED_GENERIC = re.compile(f"{GENERIC_LAW}(?:{_JOINER}{GENERIC_LAW})+")
_GENERIC_BEFORE_CITATION = re.compile(f"{GENERIC_LAW}{_JOINER}(?=《)")


def verify_citations(text: str, raw: list[Any], *, articles: list[dict], known, on: date
                     ) -> tuple[str, list[Citation], list[str]]:
    """Keep only citations of articles we can vouch for; scrub the rest from the text. → (text, citations, notes)."""
    allowed_keys = {(law_key(a["law"]), a["article_no"]) for a in articles if a.get("in_force") and a.get("article_no")}
    names = {law_key(a["law"]): a["law"] for a in articles}
    kept: dict[tuple[str, int], Citation] = {}
    dropped: list[str] = []

    def consider(law: str, no: int) -> bool:
        ok = _allowed(law, no, allowed_keys=allowed_keys, known=known, on=on)
        label = f"《{law.strip('《》')}》{article_label(no)}"
        if ok:
            key = (law_key(law), no)
            kept.setdefault(key, Citation(law=names.get(key[0], law.strip("《》")), article=article_label(no),
                                          in_force=True))
        elif label not in dropped:
            dropped.append(label)
        return ok

    for c in raw:
        law = getattr(c, "law", None) or (c.get("law") if isinstance(c, dict) else None)
        art = getattr(c, "article", None) or (c.get("article") if isinstance(c, dict) else None)
        no = article_no(art)
        if law and no:
            consider(law, no)

    # Rewrite text references from the end so earlier spans stay valid.
    spans: dict[tuple[int, int], list[tuple[str, int, bool]]] = {}
    for tc in find_citations(text):
        spans.setdefault(tc.span, []).append((tc.law, tc.article_no, consider(tc.law, tc.article_no)))
    for (start, end), items in sorted(spans.items(), reverse=True):
        if all(ok for _, _, ok in items):
            continue
        good = [no for _, no, ok in items if ok]
        law = items[0][0]
        replacement = f"《{law}》" + "、".join(article_label(n) for n in good) if good else "相关法律法规"
        text = text[:start] + replacement + text[end:]
    # Several dropped citations in one sentence leave "相关法律法规和相关法律法规以及《…》": one mention, and none
    # where a checked citation follows.
    text = _REPEATED_GENERIC.sub(GENERIC_LAW, text)
    text = _GENERIC_BEFORE_CITATION.sub("", text)

    notes = []
    if dropped:
        notes.append("大模型草稿中的引用" + "、".join(dropped) + "无法在事实发生日有效的知识库条文中核实，已删除，请核对法律依据。")
    return text, list(kept.values()), notes


def llm_draft(req: DraftRequest, *, settings: Settings, articles: list[dict], examples: list[dict],
              facts_date: date, known=None, chat_model=None) -> LLMDraft:
    """Raises LLMUnavailable on any failure (transport, time, malformed or unusable output)."""
    prompt = load_prompt(settings.prompts_dir, PROMPT_NAME)
    model = chat_model if chat_model is not None else make_chat_model(settings)
    chain = prompt.chat_template() | model
    inputs = prompt_inputs(req, articles=articles, examples=examples, facts_date=facts_date)
    stats = CallStats()
    message = bounded_call(lambda: chain.invoke(inputs), timeout=settings.llm_timeout,
                           max_retries=settings.llm_max_retries, stats=stats)
    out = parse_draft_output(getattr(message, "content", message))
    text = out.text.replace("\\n", "\n").strip()
    if len(text) < MIN_CHARS:
        raise LLMUnavailable("返回内容过短", text[:100])
    leftovers = sorted({m.group(0) for m in PLACEHOLDER_RE.finditer(text)})
    if leftovers:
        raise LLMUnavailable("草稿含占位符", "、".join(leftovers[:5]))
    text, citations, notes = verify_citations(text, out.citations, articles=articles, known=known, on=facts_date)
    return LLMDraft(text=text, citations=citations, prompt_version=prompt.version, notes=notes, stats=stats)
