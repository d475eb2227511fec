"""Drafting entry point used by the queue (POST /api/complaints/{id}/draft).

``draft_reply`` never raises and never waits on a model longer than timeout × (retries + 1) plus a small
margin: without an LLM, or when the LLM fails in any way, the template drafter answers and ``Draft.notice``
says why in Chinese. Every draft carries its generator, prompt (or template) version, structured citations
of articles in force on the date of the facts, and a quality report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from triage.drafting.chain import llm_draft
from triage.drafting.examples import ExampleSource, kb_examples, resolve_examples
from triage.drafting.dates import as_date, today
from triage.drafting.llm import LLMUnavailable, llm_configured
from triage.drafting.prompts import PromptFileError
from triage.drafting.quality import check_draft
from triage.taxonomy import NOT_ENV
from triage.drafting.retrieval import articles_known, call_retriever, kb_known_articles, kb_retriever
from triage.drafting.template import template_draft
from triage.drafting.types import Draft, DraftRequest
from triage.settings import Settings

log = logging.getLogger(__name__)

N_ARTICLES = 5
N_EXAMPLES = 3


def _notice(*parts: str | None) -> str | None:
    text = "；".join(p.rstrip("；。") for p in parts if p)
    return text + "。" if text else None


def draft_reply(req: DraftRequest, *, settings: Settings, retriever=None, examples: ExampleSource = None,
                chat_model: Any = None, known_articles: Callable[[str, int], bool | None] | None = None,
                draft_date: date | None = None) -> Draft:
    """Draft a reply for one complaint.

    retriever: ``(text, on, *, k, subtype) -> [{law, article, text, in_force}]``; default: the knowledge base.
    examples: list of ``{text, reply}``, an ExamplePool, or a callable; default: past cases with replies
        (only used when an LLM is configured).
    chat_model: a langchain chat model to use instead of ChatOpenAI from settings (tests, local models).
    known_articles: ``(law, article_no) -> bool | None`` for the citation checks; default: retrieved
        articles, our digest and the knowledge base.
    """
    on = as_date(req.occurred_at) or today()
    notes: list[str] = []
    use_kb = retriever is None

    articles: list[dict] = []
    try:
        # No environmental article fits a matter that is not environmental: none is offered to either drafter.
        if req.pollution_type != NOT_ENV:
            retr = retriever if retriever is not None else kb_retriever(settings)
            articles = call_retriever(retr, req.complaint_text, on, k=N_ARTICLES, subtype=req.subtype)
    except Exception as exc:  # noqa: BLE001 - a draft without retrieval is still a draft
        log.warning("regulation retrieval failed: %s", exc)
        notes.append("法规检索暂不可用，法律依据取自内置法条摘要，请核对")
    in_force = [a for a in articles if a.get("in_force")]

    known = known_articles
    if known is None:
        extra = None
        if use_kb:
            try:
                from triage.kb.store import get_store

                extra = kb_known_articles(get_store(settings))
            except Exception as exc:  # noqa: BLE001
                log.debug("knowledge base unavailable for citation checks: %s", exc)
        known = articles_known(in_force, extra)

    draft: Draft | None = None
    llm_notice: str | None = None
    if chat_model is not None or llm_configured(settings):
        source = examples if examples is not None else kb_examples(settings)
        style = resolve_examples(source, req.complaint_text, k=N_EXAMPLES, subtype=req.subtype)
        try:
            got = llm_draft(req, settings=settings, articles=in_force, examples=style, facts_date=on,
                            known=known, chat_model=chat_model)
            model_name = settings.llm_model or getattr(chat_model, "model_name", None) or "custom"
            draft = Draft(text=got.text, citations=got.citations, generator=f"llm:{model_name}",
                          prompt_version=got.prompt_version, notice=_notice(*notes, *got.notes))
            if not (req.findings or "").strip():
                draft.notice = _notice(draft.notice, "未提供核查情况：请核对草稿中的核查表述并补充核查结果")
        except LLMUnavailable as exc:
            llm_notice = f"大模型服务不可用（{exc.reason}），已使用模板生成草稿"
        except PromptFileError as exc:
            log.error("reply prompt unusable: %s", exc)
            llm_notice = f"提示词文件有误（{str(exc).split(' / ')[0]}），大模型未调用，已使用模板生成草稿"
        except Exception as exc:  # noqa: BLE001 - the promise is: never raise, always a draft
            log.exception("LLM drafting failed unexpectedly")
            llm_notice = f"大模型服务不可用（{type(exc).__name__}），已使用模板生成草稿"

    if draft is None:
        draft = template_draft(req, articles=in_force, facts_date=on, draft_date=draft_date)
        draft.notice = _notice(llm_notice, *notes, draft.notice)

    try:
        draft.quality = check_draft(draft.text, complaint_text=req.complaint_text, facts_date=on,
                                    known_articles=known, citations=draft.citations,
                                    needs_basis=req.pollution_type != NOT_ENV,
                                    findings_given=bool((req.findings or "").strip()))
    except Exception as exc:  # noqa: BLE001
        log.warning("quality check failed: %s", exc)
    return draft
