"""Pollution types, subtypes and unit kinds, loaded from knowledge/taxonomy.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from triage.settings import get_settings

NOT_ENV = "not_environmental"

# Unit kinds of LABELS.md; routing.yaml maps them to real unit names per jurisdiction.
UNIT_TYPES = (
    "ecology_environment", "urban_management", "public_security", "traffic_police", "housing_construction",
    "water_affairs", "street_town", "sanitation", "transport", "agriculture", "market_regulation",
    "natural_resources", "dispatch_center", "company", "other",
)
# Kinds that carry no routing signal: a re-dispatch desk, a company, "other".
NON_ROUTING_UNITS = frozenset({"dispatch_center", "company", "other", ""})


def _parse_keywords(raw: list | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in raw or []:
        word, _, weight = str(item).partition(":")
        try:
            out[word.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"keyword {item!r}: the weight after ':' must be a number (e.g. 油烟:2)") from None
    return out


def _parse_examples(raw: list | None, code: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(e, str) and e.strip() for e in raw):
        raise ValueError(f"taxonomy: examples of {code} must be a list of non-empty sentences")
    return tuple(e.strip() for e in raw)


@dataclass(frozen=True)
class Subtype:
    code: str
    type: str
    name: str
    description: str
    keywords: dict[str, float]
    examples: tuple[str, ...] = ()


@dataclass
class Taxonomy:
    version: str
    types: dict[str, dict] = field(default_factory=dict)  # code -> {name, description, keywords}
    environmental_signals: dict[str, float] = field(default_factory=dict)
    subtypes: dict[str, Subtype] = field(default_factory=dict)

    @property
    def type_codes(self) -> list[str]:
        return list(self.types)

    def subtypes_of(self, type_code: str) -> list[Subtype]:
        return [s for s in self.subtypes.values() if s.type == type_code]

    def type_of(self, subtype_code: str) -> str:
        if subtype_code in self.subtypes:
            return self.subtypes[subtype_code].type
        return subtype_code.split(".")[0] if subtype_code else NOT_ENV

    def is_valid(self, type_code: str, subtype_code: str | None = None) -> bool:
        if type_code not in self.types:
            return False
        if not subtype_code:
            return True
        return subtype_code in self.subtypes and self.subtypes[subtype_code].type == type_code

    def name(self, code: str) -> str:
        if code in self.types:
            return self.types[code]["name"]
        if code in self.subtypes:
            return self.subtypes[code].name
        return code

    def default_subtype(self, type_code: str) -> str:
        """`<type>.other` where none fits; empty for not_environmental (as in the labelled data)."""
        if type_code == NOT_ENV:
            return ""
        other = f"{type_code}.other"
        if other in self.subtypes:
            return other
        subs = self.subtypes_of(type_code)
        return subs[0].code if subs else ""


class KnowledgeConfigError(ValueError):
    """An office's knowledge file (taxonomy, routing, SLA, calendar) cannot be used; the message names the file and
    the line or entry. The service refuses to start on one (triage.api.app.check_knowledge)."""


# What reading an office's YAML file can raise: its syntax, or an entry of the wrong shape.
CONFIG_ERRORS = (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError)


def config_error(path: Path, exc: BaseException, *, cls: type[KnowledgeConfigError] = KnowledgeConfigError,
                 prefix: str = "") -> KnowledgeConfigError:
    """The error to raise for a knowledge file: the file, the line where YAML knows it, and what is wrong."""
    if isinstance(exc, KnowledgeConfigError) and not prefix:
        return exc
    mark = getattr(exc, "problem_mark", None)
    line = f" 第 {mark.line + 1} 行 / line {mark.line + 1}" if mark is not None else ""
    if isinstance(exc, yaml.YAMLError):
        what = f"YAML 格式错误 / not valid YAML: {getattr(exc, 'problem', None) or exc}"
    elif isinstance(exc, KeyError):
        what = f"missing key {exc}"
    else:
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return cls(f"{prefix}{path}{line}: {what}")


def load_taxonomy(path: Path) -> Taxonomy:
    """Read taxonomy.yaml; a mistake raises KnowledgeConfigError naming the file and the line or the entry."""
    try:
        return _build_taxonomy(yaml.safe_load(path.read_text(encoding="utf-8")))
    except CONFIG_ERRORS as exc:
        raise config_error(path, exc) from exc


def _build_taxonomy(data: dict) -> Taxonomy:
    tax = Taxonomy(version=str(data.get("version", "unversioned")),
                   environmental_signals=_parse_keywords(data.get("environmental_signals")))
    for code, t in data["types"].items():
        tax.types[code] = {"name": t["name"], "description": t.get("description", ""),
                           "keywords": _parse_keywords(t.get("keywords")),
                           "examples": _parse_examples(t.get("examples"), code)}
        for scode, s in (t.get("subtypes") or {}).items():
            if scode.split(".")[0] != code:
                raise ValueError(f"taxonomy: subtype {scode} is listed under {code}")
            tax.subtypes[scode] = Subtype(scode, code, s["name"], s.get("description", ""),
                                          _parse_keywords(s.get("keywords")),
                                          _parse_examples(s.get("examples"), scode))
    return tax


@lru_cache(maxsize=4)
def _cached(path: str) -> Taxonomy:
    return load_taxonomy(Path(path))


def get_taxonomy(path: Path | None = None) -> Taxonomy:
    return _cached(str(path or get_settings().knowledge_dir / "taxonomy.yaml"))
