"""Calling an OpenAI-compatible chat endpoint through langchain-openai, with a hard time bound.

``bounded_call`` runs each attempt in a daemon thread and stops waiting at the attempt's deadline, so the
caller never waits longer than ``timeout × (retries + 1)`` plus a small margin, whatever the server does
(stalls, trickles bytes, answers ``Retry-After: 60``). The openai client's own retries are switched off;
transport failures (timeouts, connection errors, HTTP 429/5xx) are retried here up to ``llm_max_retries``.
Every failure ends as ``LLMUnavailable`` with a short Chinese reason for the notice shown to staff.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from triage.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MARGIN_S = 1.5  # thread start-up, parsing, backoff
BACKOFF_S = 0.25


class LLMUnavailable(RuntimeError):
    """The model could not give a usable answer; ``reason`` is short Chinese for the staff notice."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def llm_configured(settings: Settings) -> bool:
    return bool(settings.llm_base_url and settings.llm_model)


def make_chat_model(settings: Settings, *, temperature: float = 0.2, max_tokens: int | None = 1500):
    """ChatOpenAI for any OpenAI-compatible server (vLLM, Ollama, DeepSeek, Qwen…); the API key is optional."""
    from langchain_openai import ChatOpenAI

    if not llm_configured(settings):
        raise LLMUnavailable("未配置", "TRIAGE_LLM_BASE_URL and TRIAGE_LLM_MODEL are required")
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or "not-needed",
        timeout=settings.llm_timeout,
        max_retries=0,  # retries are ours (bounded_call), so the total time stays bounded
        temperature=temperature,
        max_tokens=max_tokens,
        use_responses_api=False,  # plain /v1/chat/completions, which every compatible server offers
    )


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None:
        resp = getattr(exc, "response", None)
        code = getattr(resp, "status_code", None)
    return code if isinstance(code, int) else None


def describe_error(exc: BaseException) -> tuple[str, bool]:
    """→ (Chinese reason, retryable)."""
    import httpx
    import openai

    if isinstance(exc, LLMUnavailable):
        return exc.reason, exc.reason == "超时"
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, TimeoutError)):
        return "超时", True
    if isinstance(exc, (openai.APIConnectionError, httpx.ConnectError, ConnectionError)):
        return "无法连接", True
    if isinstance(exc, (json.JSONDecodeError, ValidationError, openai.APIResponseValidationError)):
        return "返回格式无法解析", False
    code = _status_code(exc)
    if code is not None and code >= 400:
        if code == 429:
            return "请求过多 HTTP 429", True
        if code >= 500:
            return f"服务端错误 HTTP {code}", True
        return f"请求被拒绝 HTTP {code}", False
    if isinstance(exc, ValueError):
        return "返回格式无法解析", False
    return f"调用失败 {type(exc).__name__}", False


def _run_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    box: dict[str, Any] = {}
    done = threading.Event()

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="llm-call", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise LLMUnavailable("超时", f"no answer within {seconds:.1f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass
class CallStats:
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def bounded_call(fn: Callable[[], T], *, timeout: float, max_retries: int, stats: CallStats | None = None) -> T:
    """Run ``fn`` with at most ``max_retries`` retries of transport failures, within
    ``timeout × (max_retries + 1) + MARGIN_S`` seconds in all. Raises LLMUnavailable."""
    stats = stats or CallStats()
    attempts = max(1, int(max_retries) + 1)
    start = time.monotonic()
    deadline = start + timeout * attempts + MARGIN_S
    last_reason = "调用失败"
    for attempt in range(attempts):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            break
        stats.attempts += 1
        try:
            value = _run_with_deadline(fn, min(timeout + 0.5, remaining))
            stats.seconds = time.monotonic() - start
            return value
        except Exception as exc:  # noqa: BLE001 - classified below
            reason, retryable = describe_error(exc)
            stats.errors.append(f"{reason}: {type(exc).__name__}: {str(exc)[:200]}")
            log.warning("LLM attempt %d/%d failed: %s (%s)", attempt + 1, attempts, reason, exc)
            last_reason = reason
            if not retryable:
                stats.seconds = time.monotonic() - start
                raise LLMUnavailable(reason, str(exc)[:300]) from exc
            if attempt + 1 < attempts:
                time.sleep(min(BACKOFF_S * (attempt + 1), max(0.0, deadline - time.monotonic() - 0.05)))
    stats.seconds = time.monotonic() - start
    raise LLMUnavailable(last_reason, "; ".join(stats.errors)[-300:])


# ---------------------------------------------------------------------------------------------- draft output

class CitedArticle(BaseModel):
    law: str
    article: str


class DraftOutput(BaseModel):
    text: str = Field(min_length=1)
    citations: list[CitedArticle] = []


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.M)


def parse_draft_output(content: Any) -> DraftOutput:
    """The model's message content → DraftOutput; tolerant of code fences and text around the JSON."""
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    s = str(content or "").strip()
    if not s:
        raise LLMUnavailable("返回内容为空")
    s = _FENCE.sub("", s).strip()
    try:
        data = json.loads(s)
    except json.JSONDecodeError:
        start, end = s.find("{"), s.rfind("}")
        if start < 0 or end <= start:
            raise LLMUnavailable("返回格式无法解析", s[:200]) from None
        try:
            data = json.loads(s[start : end + 1])
        except json.JSONDecodeError as exc:
            raise LLMUnavailable("返回格式无法解析", s[:200]) from exc
    if not isinstance(data, dict):
        raise LLMUnavailable("返回格式无法解析", s[:200])
    if isinstance(data.get("citations"), list):
        data["citations"] = [c for c in data["citations"] if isinstance(c, dict) and c.get("law")]
    try:
        out = DraftOutput.model_validate(data)
    except ValidationError as exc:
        if not str(data.get("text") or "").strip():
            raise LLMUnavailable("返回内容为空") from exc
        raise LLMUnavailable("返回格式无法解析", str(exc)[:200]) from exc
    if not out.text.strip():
        raise LLMUnavailable("返回内容为空")
    return out
