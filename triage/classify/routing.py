"""Responsible unit: ordered rules from knowledge/routing.yaml, overruled by the jurisdiction's own history.

The rules encode the legal division of duties; real offices have their own habits (Haikou sends construction
noise and loudspeakers to 城管, shouting to 公安). When past cases of the same kind clearly went to another unit,
history wins and the suggestion says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from triage.settings import get_settings
from triage.taxonomy import CONFIG_ERRORS, NON_ROUTING_UNITS, UNIT_TYPES, config_error

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT_WORDS = re.compile(r"夜间|夜里|晚上|半夜|深夜|凌晨|通宵|连夜|整夜|晚上十|22点|23点|24点|零点")
ROUTING_UNITS = tuple(u for u in UNIT_TYPES if u not in NON_ROUTING_UNITS)


@dataclass(frozen=True)
class Rule:
    id: str
    why: str
    unit: str
    types: tuple[str, ...] = ()
    subtypes: tuple[str, ...] = ()
    any_words: tuple[str, ...] = ()
    no_words: tuple[str, ...] = ()
    night: bool | None = None

    def matches(self, *, ptype: str, subtype: str, text: str, night: bool) -> bool:
        if self.types and ptype not in self.types:
            return False
        if self.subtypes and subtype not in self.subtypes:
            return False
        if self.any_words and not any(w in text for w in self.any_words):
            return False
        if self.no_words and any(w in text for w in self.no_words):
            return False
        return self.night is None or self.night == night


def _tuple(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    return tuple(v) if isinstance(v, list) else (str(v),)


@dataclass
class Routing:
    version: str
    default_jurisdiction: str
    jurisdictions: dict[str, dict]
    rules: list[Rule]
    unit_aliases: dict[str, list[str]] = field(default_factory=dict)
    unit_name_words: dict[str, list[str]] = field(default_factory=dict)

    def kind_of_unit_name(self, name: str) -> str | None:
        """The unit kind a handling unit's own name denotes (承办单位 in a platform export), or None where it is
        unclear. In order: a unit name configured for any jurisdiction, as written; the words of organisations
        that are not government bodies (`unit_name_words`: 有限公司 → company, 专席 → dispatch centre), which must
        win over a duty word inside them (威立雅水务有限公司 is a company, 数字城管专席 the dispatch desk); then
        the alias lexicon, longest first. Generic names (区政府) say nothing and give None.
        Haikou dev file: 764 of the 788 names it maps agree with the file's unit_type (0.97), 116 of 904 unmapped."""
        name = name.strip()
        if not name:
            return None
        for j in self.jurisdictions.values():
            for kind, configured in (j.get("units") or {}).items():
                if configured == name:
                    return kind
        for words in (self.unit_name_words, {k: w for k, w in self.unit_aliases.items() if k != "generic"}):
            found = sorted(((w, kind) for kind, ws in words.items() for w in ws if w in name), key=lambda a: -len(a[0]))
            if found:
                return found[0][1]
        return None

    def jurisdiction(self, code: str | None) -> dict:
        code = code or self.default_jurisdiction
        if code not in self.jurisdictions:
            raise KeyError(f"unknown jurisdiction {code!r}; known: {sorted(self.jurisdictions)}")
        return self.jurisdictions[code]

    def unit_name(self, unit_type: str, jurisdiction: str | None = None) -> str:
        return self.jurisdiction(jurisdiction)["units"].get(unit_type, unit_type)

    def regions(self, jurisdiction: str | None = None) -> tuple[str, ...]:
        """The places whose local regulations bind this jurisdiction (province, city, district), e.g. 广东省."""
        return tuple(self.jurisdiction(jurisdiction).get("regions") or ())

    def local_rule_applies(self, meta: dict[str, Any], jurisdiction: str | None = None) -> bool:
        """National law and our digest apply everywhere; a local regulation only where its title's place is one of
        the jurisdiction's regions (广东省大气污染防治条例 binds 广州, not 海口)."""
        level = meta.get("level")
        law = str(meta.get("law") or "").strip("《》")
        if level == "digest":
            # A digest entry stands for the article it cites: one citing 广州市… binds where that regulation does.
            from triage.kb.regulations import looks_local

            if not looks_local(law):
                return True
        elif level != "local":
            return True
        try:
            regions = self.regions(jurisdiction)
        except KeyError:  # an unknown jurisdiction binds no local regulation
            return False
        # 海南省 also binds 海南经济特区… (the province's special-zone regulations carry its short name).
        names = set(regions) | {r[:-1] for r in regions if r.endswith("省") and len(r) > 2}
        return any(law.startswith(name) for name in names)

    def resolve_unit(self, unit: str, jurisdiction: str | None) -> str:
        if unit.startswith("@"):
            return self.jurisdiction(jurisdiction)[unit[1:]]
        return unit

    def apply_rules(self, *, ptype: str, subtype: str, text: str, occurred_at: datetime | None = None,
                    jurisdiction: str | None = None) -> tuple[Rule, str] | None:
        night = is_night(text, occurred_at)
        for rule in self.rules:
            if rule.matches(ptype=ptype, subtype=subtype, text=text, night=night):
                return rule, self.resolve_unit(rule.unit, jurisdiction)
        return None


def is_night(text: str, occurred_at: datetime | None) -> bool:
    if occurred_at is not None:
        local = occurred_at.astimezone(SHANGHAI) if occurred_at.tzinfo else occurred_at
        if local.hour >= 22 or local.hour < 6:
            return True
    return bool(NIGHT_WORDS.search(text))


RULE_KEYS = {"id", "why", "unit", "type", "subtype", "any_words", "no_words", "night"}


def _check_rule(r: dict, codes: tuple[set[str], set[str]] | None) -> None:
    """A mistake in a rule used to pass silently: a misspelt key (subtypes:) was ignored, so the rule matched far
    more than meant; an unknown subtype or a night of 'yes please' made it match nothing."""
    rid = r.get("id", "?")
    unknown = sorted(set(r) - RULE_KEYS)
    if unknown:
        raise ValueError(f"rule {rid}: unknown key {', '.join(unknown)} (allowed: {', '.join(sorted(RULE_KEYS))})")
    if "unit" not in r:
        raise ValueError(f"rule {rid}: no unit")
    if "night" in r and not isinstance(r["night"], bool):
        raise ValueError(f"rule {rid}: night must be true or false, not {r['night']!r}")
    if codes is not None:
        types, subtypes = codes
        for t in _tuple(r.get("type")):
            if t not in types:
                raise ValueError(f"rule {rid}: unknown type {t}")
        for st in _tuple(r.get("subtype")):
            if st not in subtypes:
                raise ValueError(f"rule {rid}: unknown subtype {st}")


def _taxonomy_codes(path: Path) -> tuple[set[str], set[str]] | None:
    """The type and subtype codes of the taxonomy beside routing.yaml (None where there is none to check with)."""
    from triage.taxonomy import load_taxonomy

    tax_path = path.with_name("taxonomy.yaml")
    if not tax_path.exists():
        return None
    tax = load_taxonomy(tax_path)
    return set(tax.types), set(tax.subtypes)


def load_routing(path: Path) -> Routing:
    """Read and check routing.yaml; a mistake raises ValueError naming the file, the line (YAML) or the rule or
    jurisdiction and key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return _build_routing(data, _taxonomy_codes(path))
    except CONFIG_ERRORS as exc:  # a broken taxonomy beside it names its own file
        raise config_error(path, exc) from exc


def _build_routing(data: dict, codes: tuple[set[str], set[str]] | None) -> Routing:
    rules = []
    for r in data["rules"]:
        _check_rule(r, codes)
        unit = r["unit"]
        if not unit.startswith("@") and unit not in UNIT_TYPES:
            raise ValueError(f"routing rule {r['id']}: unknown unit kind {unit}")
        rules.append(Rule(id=r["id"], why=r.get("why", ""), unit=unit, types=_tuple(r.get("type")),
                          subtypes=_tuple(r.get("subtype")), any_words=_tuple(r.get("any_words")),
                          no_words=_tuple(r.get("no_words")), night=r.get("night")))
    indirect = {r.unit[1:] for r in rules if r.unit.startswith("@")}
    if data["default_jurisdiction"] not in data["jurisdictions"]:
        raise ValueError(f"default_jurisdiction {data['default_jurisdiction']} is not among the jurisdictions")
    for code, j in data["jurisdictions"].items():
        regions = j.get("regions")
        if regions is not None and (not isinstance(regions, list)
                                    or not all(isinstance(r, str) and r.strip() for r in regions)):
            raise ValueError(f"routing jurisdiction {code}: regions must be a list of place names")
        for kind in j.get("units") or {}:
            if kind not in UNIT_TYPES:
                raise ValueError(f"jurisdiction {code}: units: unknown unit kind {kind}")
        for key in indirect:  # e.g. construction_noise_unit, named by a rule's "@…"
            if key not in j:
                raise ValueError(f"jurisdiction {code}: {key} is missing (rules route to @{key})")
            if j[key] not in UNIT_TYPES:
                raise ValueError(f"jurisdiction {code}: {key}: unknown unit kind {j[key]}")
    return Routing(version=str(data.get("version", "unversioned")),
                   default_jurisdiction=data["default_jurisdiction"], jurisdictions=data["jurisdictions"],
                   rules=rules, unit_aliases=_aliases(data.get("unit_aliases") or {}),
                   unit_name_words=_aliases(data.get("unit_name_words") or {}, "unit_name_words"))


def _aliases(raw: dict, key: str = "unit_aliases") -> dict[str, list[str]]:
    for kind in raw:
        if kind != "generic" and kind not in UNIT_TYPES:
            raise ValueError(f"routing {key}: unknown unit kind {kind}")
    return {kind: [str(w) for w in words] for kind, words in raw.items()}


@lru_cache(maxsize=4)
def _cached(path: str) -> Routing:
    return load_routing(Path(path))


def get_routing(path: Path | None = None) -> Routing:
    return _cached(str(path or get_settings().knowledge_dir / "routing.yaml"))


def unit_name(unit_type: str, jurisdiction: str | None = None) -> str:
    """Real name of a unit kind in a jurisdiction (default: the configured one)."""
    return get_routing().unit_name(unit_type, jurisdiction or get_settings().jurisdiction)
