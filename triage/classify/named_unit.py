"""The unit a complaint itself names: "请市城管核实处理", "希望环保局来查一下".

12345 agents close most work orders with the department the caller expects, and callers often ask for one. That
is strong evidence of routing, but not the last word: a district government (请龙华区政府核实处理) hands the order
to one of its bureaus, and an office may route some named requests elsewhere. So the member learns, from the
office's own history, where orders naming each unit actually went, starting from the named unit itself.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

GENERIC = "generic"
# Generic names that name no body at all, only "whoever's duty it is" (请职能局核实处理): the legal division of duties
# answers them, unlike 区政府, a real body that hands orders on by its own habits.
DEFERRING = frozenset({"职能局", "职能部门", "相关部门", "有关部门", "主管部门"})
# A request clause: a verb of asking, a short stretch that names the unit, a verb of handling. Only the last one
# counts: the agent's closing instruction comes last, and earlier ones may quote what another unit said.
_REQUEST = re.compile(r"(?:请|要求|希望|建议|由|转)([^，。！？!?,；;：:\s]{1,18}?)"
                      r"(?:核实|处理|查处|核查|调查|解决|跟进|协调|整治|督促|执法|管理|来|到场|前往|出面|介入)")
# Pseudo-counts placed on the named unit before any history: with no past cases the named unit is the best guess.
# Cross-validated on the Haikou orders (unit accuracy 0.79 without the member; 0.84 with 3 pseudo-counts and
# weight 1; 0.85 with 10 and weight 2; 0.86 adding mentions at 0.3).
PRIOR_COUNTS = 10.0
MENTION_PRIOR_COUNTS = 0.3  # a unit merely mentioned is a much weaker hint than one asked for
SMOOTHING = 0.1  # per unit, so that no unit is ruled out by a name alone
SHRINK = 2.0  # pseudo-counts a finer level of history borrows from the coarser one
QUOTE_MIN_CASES = 5  # the reason shown quotes the finest level of history that has at least this many orders


@dataclass(frozen=True)
class NamedUnit:
    key: str  # a unit kind, or "generic:<word>" for a name that carries no duty (区政府, 职能局)
    kind: str | None  # the unit kind the words name; None for generic names
    words: str  # the request clause as written, shown to the dispatcher
    requested: bool = True  # False: the unit is only mentioned ("水务局电话的问题"), not asked for

    @property
    def defers(self) -> bool:
        """Asks for whoever has the duty ("请职能局核实处理"), naming no body."""
        return self.requested and self.kind is None and self.key.split(":", 1)[1] in DEFERRING


class UnitNames:
    """Finds the unit a complaint names, from the alias lexicon in knowledge/routing.yaml."""

    def __init__(self, aliases: dict[str, list[str]]):
        # A unit with a duty before a generic name (区政府环保局 names 环保), then the longest alias, so that
        # 交通警察 beats 交通 and 森林公安 beats 公安.
        self._aliases = sorted(((str(w), kind) for kind, words in aliases.items() for w in words),
                               key=lambda a: (a[1] == GENERIC, -len(a[0])))

    def find(self, text: str) -> NamedUnit | None:
        clauses = _REQUEST.findall(text)
        for clause in reversed(clauses):
            for word, kind in self._aliases:
                if word in clause:
                    if kind == GENERIC:
                        return NamedUnit(key=f"{GENERIC}:{word}", kind=None, words=clause)
                    return NamedUnit(key=kind, kind=kind, words=clause)
        # No request: a unit merely mentioned ("住建局电话号码的问题") is weaker evidence, learnt separately.
        for word, kind in self._aliases:
            if kind != GENERIC and word in text:
                return NamedUnit(key=f"mention:{kind}", kind=kind, words=word, requested=False)
        return None


class NamedUnitMember:
    """P(unit | the unit the complaint names, the kind of complaint), counted from the office's history.

    Estimates back off from the finest key to the coarsest (the clause and the subtype, ..., the named unit
    alone) and finally to a prior on the named unit itself, each level shrunk towards the next."""

    name = "named_unit"

    def __init__(self, names: UnitNames, units: list[str]):
        self.names, self.units = names, list(units)
        self.counts: dict[str, Counter] = {}

    @staticmethod
    def keys(named: NamedUnit, ptype: str, subtype: str) -> list[str]:
        """Finest first. A generic name is also keyed by its exact words: 龙华区政府 is not 秀英区政府."""
        if named.kind is not None:
            return [named.key]  # a named duty: where the office sends it hardly depends on the complaint's kind
        exact, alias = f"{named.key}@{named.words}", named.key
        kinds = [subtype, ptype] if subtype else [ptype]
        # The kind of complaint matters more than the exact words: every keyed-by-kind level before a bare name.
        return [f"{exact}|{k}" for k in kinds] + [f"{alias}|{k}" for k in kinds] + [exact, alias]

    def fit(self, texts: list[str], units: list[str], ptypes: list[str], subtypes: list[str]) -> "NamedUnitMember":
        """Aligned lists; unit "" where the handling unit says nothing about routing."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for text, unit, ptype, subtype in zip(texts, units, ptypes, subtypes):
            if not unit or unit not in self.units:
                continue
            named = self.names.find(text)
            if named is not None:
                keys = self.keys(named, ptype, subtype)
                # A case of unknown type counts only at the keys without the kind of complaint (the last two).
                for key in keys if ptype else keys[-2:]:
                    counts[key][unit] += 1
        self.counts = dict(counts)
        return self

    def predict(self, named: NamedUnit | None, ptype: str, subtype: str) -> np.ndarray | None:
        if named is None:
            return None
        keys = self.keys(named, ptype, subtype)
        if named.kind in self.units:
            p = np.full(len(self.units), SMOOTHING)
            p[self.units.index(named.kind)] += PRIOR_COUNTS if named.requested else MENTION_PRIOR_COUNTS
        elif not any(self.counts.get(k) for k in keys):
            return None  # a generic name the office has never seen: no evidence either way
        else:
            p = np.ones(len(self.units))
        p = p / p.sum()
        for key in reversed(keys):  # coarsest first; each finer level is shrunk towards the coarser estimate
            c = self.counts.get(key)
            if c:
                n = sum(c.values())
                p = (np.array([c.get(u, 0) for u in self.units], dtype=float) + SHRINK * p) / (n + SHRINK)
        p = p + 1e-4
        return p / p.sum()

    def history(self, named: NamedUnit, unit: str, ptype: str, subtype: str) -> tuple[int, int, str]:
        """(orders that went to `unit`, orders, which orders those are, in words), for the reason shown.

        The finest level with QUOTE_MIN_CASES orders or more is quoted, else the level with the most: the estimate
        borrows from the coarser levels, and "1 件中 1 件" would read as certainty it does not carry."""
        levels = [(key, self.counts[key]) for key in self.keys(named, ptype, subtype) if self.counts.get(key)]
        if not levels:
            return 0, 0, ""
        key, c = next(((k, c) for k, c in levels if sum(c.values()) >= QUOTE_MIN_CASES),
                      max(levels, key=lambda kc: sum(kc[1].values())))
        return c.get(unit, 0), sum(c.values()), self._describe(named, key)

    @staticmethod
    def _describe(named: NamedUnit, key: str) -> str:
        if not named.requested:
            return "提及它的"
        if named.kind is not None:
            return "点名该单位的"
        level, _, kind = key.partition("|")
        who = f"「{named.words}」" if "@" in level else named.key.split(":", 1)[1]  # 龙华区政府, or any 区政府
        return f"点名{who}的同类诉求" if kind else f"点名{who}的"
