"""The LLM member of the classifier ensemble: structured output constrained to the taxonomy's codes.

``LLMClassifier(settings).classify(text)`` asks any OpenAI-compatible endpoint (langchain-openai ChatOpenAI,
``with_structured_output(Model, method="json_schema")``) for pollution_type / subtype / unit_type. The output
model is built from the allowed codes, so the JSON schema sent to the server lists them as enums (servers
with guided decoding cannot produce anything else) and the answer is validated against them again here. An
unknown or inconsistent code is rejected — ``classify`` returns None, ``classify_or_raise`` raises
``UnknownCodeError`` — and never reaches the database. The call sits on the intake path, so it gets one try
within ``llm_classify_timeout`` (plus a small margin) and no retry: a miss only means the other members decide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from triage.drafting.llm import CallStats, LLMUnavailable, bounded_call, llm_configured, make_chat_model
from triage.drafting.prompts import load_prompt
from triage.settings import Settings

log = logging.getLogger(__name__)

NOT_ENV = "not_environmental"
PROMPT_NAME = "classify"

# The codes of LABELS.md; used when no taxonomy is injected and knowledge/taxonomy.yaml cannot be read.
DEFAULT_POLLUTION_TYPES = ("noise", "air", "water", "solid_waste", "soil", "radiation", "ecology", NOT_ENV)
DEFAULT_SUBTYPES = (
    "noise.construction", "noise.social_life", "noise.industrial", "noise.traffic", "noise.other",
    "air.industrial", "air.dust", "air.cooking_fumes", "air.open_burning", "air.vehicle_exhaust", "air.odour",
    "air.other",
    "water.industrial_discharge", "water.sewage", "water.river", "water.drinking_source", "water.other",
    "solid_waste.household", "solid_waste.construction", "solid_waste.industrial", "solid_waste.hazardous",
    "solid_waste.other",
    "soil.contamination", "soil.other", "radiation.electromagnetic", "radiation.other", "ecology.damage",
    "ecology.other",
)
DEFAULT_UNIT_TYPES = (
    "ecology_environment", "urban_management", "public_security", "traffic_police", "housing_construction",
    "water_affairs", "street_town", "sanitation", "transport", "agriculture", "market_regulation",
    "natural_resources", "dispatch_center", "company", "other",
)


class UnknownCodeError(ValueError):
    """The model answered with a code outside the taxonomy (or a subtype of another type)."""


@dataclass(frozen=True)
class AllowedCodes:
    pollution_types: frozenset[str]
    subtypes: frozenset[str]
    unit_types: frozenset[str]

    @classmethod
    def of(cls, pollution_types, subtypes, unit_types) -> "AllowedCodes":
        return cls(frozenset(pollution_types), frozenset(subtypes), frozenset(unit_types))

    @classmethod
    def labels(cls) -> "AllowedCodes":
        return cls.of(DEFAULT_POLLUTION_TYPES, DEFAULT_SUBTYPES, DEFAULT_UNIT_TYPES)

    @classmethod
    def from_taxonomy(cls) -> "AllowedCodes":
        """The project's taxonomy (knowledge/taxonomy.yaml) when readable, else the LABELS.md codes."""
        try:
            from triage.taxonomy import UNIT_TYPES, get_taxonomy

            tax = get_taxonomy()
            types = set(tax.type_codes) | {NOT_ENV}
            subtypes = set(tax.subtypes)
            if types and subtypes:
                return cls.of(types, subtypes, UNIT_TYPES)
        except Exception as exc:  # noqa: BLE001 - the taxonomy module is someone else's; stay usable
            log.info("taxonomy unavailable, using LABELS.md codes: %s", exc)
        return cls.labels()

    def check(self, pollution_type: str, subtype: str | None, unit_type: str) -> None:
        if pollution_type not in self.pollution_types:
            raise UnknownCodeError(f"unknown pollution_type code {pollution_type!r}")
        if unit_type not in self.unit_types:
            raise UnknownCodeError(f"unknown unit_type code {unit_type!r}")
        if pollution_type == NOT_ENV:
            if subtype not in (None, "", NOT_ENV):
                raise UnknownCodeError(f"subtype {subtype!r} given for a not_environmental complaint")
            return
        if subtype not in self.subtypes:
            raise UnknownCodeError(f"unknown subtype code {subtype!r}")
        if not subtype.startswith(pollution_type + "."):
            raise UnknownCodeError(f"subtype {subtype!r} does not belong to pollution_type {pollution_type!r}")


def output_model(allowed: AllowedCodes) -> type[BaseModel]:
    """A pydantic model whose JSON schema lists the allowed codes as enums (all fields required: strict mode)."""
    types = tuple(sorted(allowed.pollution_types))
    subtypes = tuple(sorted(allowed.subtypes | {NOT_ENV}))
    units = tuple(sorted(allowed.unit_types))
    return create_model(
        "ComplaintLabels",
        pollution_type=(Literal[types], Field(description="污染类型代码")),
        subtype=(Literal[subtypes], Field(description="细分类别代码；非环保诉求填 not_environmental")),
        unit_type=(Literal[units], Field(description="承办单位类型代码")),
        confidence=(float, Field(description="0 到 1 之间，对污染类型判断的把握")),
        evidence=(str, Field(description="支持判断的原文关键词句")),
    )


def _unknown_from_validation(exc: ValidationError) -> UnknownCodeError | None:
    for err in exc.errors():
        if err.get("type") == "literal_error":
            field = ".".join(str(x) for x in err.get("loc", ()))
            return UnknownCodeError(f"unknown {field} code {err.get('input')!r}")
    return None


def _codes_block(codes) -> str:
    return "、".join(sorted(codes))


class LLMClassifier:
    """Ensemble member; ``enabled`` is False when no LLM endpoint is configured."""

    name = "llm"

    def __init__(self, settings: Settings, *, allowed: AllowedCodes | None = None, chat_model: Any = None,
                 method: str = "json_schema"):
        self.settings = settings
        self.allowed = allowed or AllowedCodes.from_taxonomy()
        self.method = method
        self._chat_model = chat_model
        self.model_cls = output_model(self.allowed)
        self.last_error: str | None = None
        self.last_reason: str | None = None  # the same, in a few Chinese words for staff (the case page)
        self.stats = CallStats()

    @property
    def enabled(self) -> bool:
        return self._chat_model is not None or llm_configured(self.settings)

    @property
    def prompt_version(self) -> str:
        return load_prompt(self.settings.prompts_dir, PROMPT_NAME).version

    def _chain(self):
        prompt = load_prompt(self.settings.prompts_dir, PROMPT_NAME)
        model = self._chat_model if self._chat_model is not None else make_chat_model(self.settings, temperature=0.0,
                                                                                       max_tokens=300)
        structured = model.with_structured_output(self.model_cls, method=self.method)
        return prompt, prompt.chat_template() | structured

    def classify_or_raise(self, text: str) -> dict:
        """→ {pollution_type, subtype, unit_type, confidence, evidence, model, prompt_version}.

        Raises LLMUnavailable (transport, time, unparseable output) or UnknownCodeError (code not allowed).
        """
        prompt, chain = self._chain()
        inputs = {
            "text": (text or "").strip()[:2000],
            "pollution_types": _codes_block(self.allowed.pollution_types),
            "subtypes": _codes_block(self.allowed.subtypes),
            "unit_types": _codes_block(self.allowed.unit_types),
        }
        self.stats = CallStats()
        try:
            out = bounded_call(lambda: chain.invoke(inputs), timeout=self.settings.llm_classify_timeout,
                               max_retries=0, stats=self.stats)
        except LLMUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and (unknown := _unknown_from_validation(cause)):
                raise unknown from cause
            raise
        if out is None:
            raise LLMUnavailable("返回格式无法解析", "no structured output")
        data = out.model_dump() if isinstance(out, BaseModel) else dict(out)
        ptype = str(data.get("pollution_type") or "")
        subtype = data.get("subtype") or None
        unit = str(data.get("unit_type") or "")
        self.allowed.check(ptype, subtype, unit)
        if ptype == NOT_ENV:
            subtype = None
        try:
            conf = float(data.get("confidence", 0.5))
        except (TypeError, ValueError):
            conf = 0.5
        return {
            "pollution_type": ptype,
            "subtype": subtype,
            "unit_type": unit,
            "confidence": min(1.0, max(0.0, conf)),
            "evidence": str(data.get("evidence") or "")[:200],
            "model": self.settings.llm_model or getattr(self._chat_model, "model_name", None) or "custom",
            "prompt_version": prompt.version,
        }

    def classify(self, text: str) -> dict | None:
        """As ``classify_or_raise``, but None (with ``last_error`` set) instead of raising."""
        self.last_error = self.last_reason = None
        if not self.enabled:
            self.last_error, self.last_reason = "LLM not configured", "未配置大模型"
            return None
        try:
            return self.classify_or_raise(text)
        except UnknownCodeError as exc:
            self.last_error, self.last_reason = f"rejected: {exc}", "答案不在分类代码之内，已舍弃"
            log.warning("LLM classification rejected: %s", exc)
        except LLMUnavailable as exc:
            self.last_error, self.last_reason = f"unavailable: {exc.reason}", exc.reason
            log.warning("LLM classification unavailable: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a member must never break the ensemble
            self.last_error, self.last_reason = f"failed: {type(exc).__name__}: {exc}", "调用出错"
            log.exception("LLM classification failed")
        return None
