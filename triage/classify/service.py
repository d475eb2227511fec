"""Triage one complaint: embed once, retrieve similar cases and articles, classify, route.

The ensemble pools the members' log-probabilities. History members (neighbours, linear) are trusted in
proportion to how close the nearest past case is: a complaint written unlike anything in the office's history
(a new office, another style) leans on the taxonomy's keywords and prototypes instead. Where the office asks for it
(TRIAGE_LLM_CLASSIFY with an LLM endpoint), the LLM's reading of the complaint is one more member.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np

from triage.classify.members import (KeywordMember, Labels, LinearMember, NeighbourMember, PrototypeMember,
                                     RegulationMember, TunedMember)
from triage.classify.named_unit import NamedUnitMember, UnitNames
from triage.classify.routing import ROUTING_UNITS, Routing, get_routing
from triage.classify.tuning import load_tuned_encoder, read_manifest, tuned_stamp
from triage.classify.types import Alternative, CitedRegulation, SimilarCase, Suggestion
from triage.embeddings import complaint_for_embedding
from triage.kb.store import CASES, REGULATIONS, KnowledgeStore
from triage.queue import duplicates as dup
from triage.settings import Settings, get_settings
from triage.taxonomy import NON_ROUTING_UNITS, NOT_ENV, UNIT_TYPES, Taxonomy, get_taxonomy

log = logging.getLogger(__name__)

K_CASES = 10
K_REGULATIONS = 8
K_DIGEST = 5
CURATED_FIRST = 3  # the digest's own articles for the suggested subtype listed first, at most this many
LOW_CONFIDENCE = 0.6
ALTERNATIVES = 3  # listed beside each suggestion; `triage eval` scores the top-3 as the suggestion + the first two
# Member weights in the log-linear pool; history members are further scaled by `history_trust`. The tuned member
# counts 2.5 times (and with trust squared, TUNED_TRUST_POWER): on held-out Haikou folds it alone gets 0.954 of the
# pollution types right (calibration error 0.037), more than the pool at equal weights (0.946), which its five
# other members outvote. With TRUST_NONE 0.90, weight 2 / 2.5 / 3: pool 0.948 / 0.950 / 0.950, message-board
# posts 0.818 / 0.814 / 0.805.
WEIGHTS = {"linear": 1.0, "neighbours": 1.0, "keywords": 1.0, "prototypes": 1.0,
           "regulations": 1.0, "tuned": 2.5, "llm": 1.0}
# The LLM member answers with one label, not a distribution; it votes as a member right this share of the time,
# the rest spread evenly. Its own "confidence" is not used: models state one, they are not calibrated by it. Both
# numbers are a prior, not a measurement: no LLM can be reached where this was built, so an office turning the
# member on should run `triage eval` with it (the table shows the system with and without the LLM).
LLM_SHARE = 0.8
# Its unit counts only among the alternatives listed (routing is the office's practice and the law, which the
# LLM does not know), with this share of the listing's weight.
LLM_UNIT_SHARE = 0.25
# No member may veto a label on its own: a word list misses vocabulary, and an office's history may hold one
# radiation case in a thousand, so "no neighbour says radiation" is weak evidence (unfloored, ~9 nats against).
# Each of these members' distributions keeps this share spread evenly over the labels before pooling. Measured
# on Haikou 5-fold CV (+4 orders, -2) and the message-board posts (+3 letters), with better calibration.
FLOOR = {"keywords": 0.05, "neighbours": 0.02}
# A pollution type with fewer past cases than this is one the history cannot speak to (an office may have one
# radiation order in a thousand): the history members abstain on it rather than vote against it, and the
# taxonomy, prototypes and regulation digest decide. Message-board posts: radiation recall 4/8 -> 7/8.
SCARCE_TYPE_CASES = 5
# How far the nearest past case may be before history stops being trusted (cosine, e5 passages). The office's own
# orders have a past case at 0.904 or closer for 99 in 100 (held-out Haikou folds, median 0.939); the message-board
# posts, another province's style, at median 0.908. At 0.90 such a letter gets the history's minimum say
# (MIN_TRUST) where 0.88 gave it 0.4: posts 0.795 -> 0.814 with better calibration (ECE 0.081 -> 0.062), Haikou
# CV type 0.950 unchanged, unit 0.886 -> 0.889 (with the tuned weight above raised from 2 to 2.5). The cost falls
# on an office that has not run `triage tune`: CV type 0.931 -> 0.924, posts unchanged (0.805).
TRUST_FULL, TRUST_NONE = 0.95, 0.90
MIN_TRUST = 0.25
# History overrules a routing rule for a kind of complaint only with enough cases that clearly agree.
HISTORY_MIN_CASES = 5
HISTORY_MIN_SHARE = 0.5
# Where the office has history, its own practice is the better evidence; the rule is a prior (cross-validated
# on the Haikou orders: unit accuracy 0.69 with rule weight 1.0, 0.77 with 0.2, 0.78 with none). The rule
# still decides ties and every case without history.
RULE_WEIGHT = 0.05
# Weight of the unit the complaint names ("请市城管核实处理"), learnt per office from its history.
NAMED_WEIGHT = 2.0
# Where the named unit and the history agree, their product is overconfident: on held-out Haikou folds those
# orders (550 of 638) read 0.983 and were right 0.904 of the time. Their unit confidence is the pooled
# distribution softened by this temperature (fitted per fold on the other four: 3.2-3.3), which brings the
# unit calibration error from 0.097 to 0.047. It changes no unit and no ranking, only the number a dispatcher
# sees and the bulk-dispatch threshold (LOW_UNIT_CONFIDENCE) reads.
NAMED_UNIT_TEMPERATURE = 3.0
# Weight of a duty-topic rule for a complaint that is not ours (户口 → 公安, 不动产 → 自然资源): the matter names the
# unit by its statutory duty, much as a caller names it, so it counts like the office's history rather than as the
# weak prior of the pollution rules (whose kind-level history is the better evidence).
TOPIC_RULE_WEIGHT = 1.0
# The tuned member (the encoder fine-tuned on this office's cases, `tuning.py`) knows the office's own style best
# and other styles least: it counts with trust squared, so a letter unlike the history hardly hears it. Haikou
# 5-fold CV with precomputed fold encoders, at weight 1: type 0.931 -> 0.942 (trust: 0.944, unscaled: 0.942);
# message-board posts 0.800 -> 0.805 (trust: 0.786, unscaled: 0.750).
TUNED_TRUST_POWER = 2


def history_trust(max_similarity: float | None) -> float:
    if max_similarity is None:
        return 0.0
    t = (max_similarity - TRUST_NONE) / (TRUST_FULL - TRUST_NONE)
    return float(np.clip(t, MIN_TRUST, 1.0))


def _one_label_vote(labels: list[str], code: str, share: float) -> np.ndarray | None:
    """A distribution for a member that names one label: ``share`` on it, the rest spread evenly."""
    if code not in labels or len(labels) < 2:
        return None
    p = np.full(len(labels), (1 - share) / (len(labels) - 1))
    p[labels.index(code)] = share
    return p


def _floored(p: np.ndarray, member: str) -> np.ndarray:
    share = FLOOR.get(member, 0.0)
    return (1 - share) * p + share / len(p)


def _abstain_on(p: np.ndarray, scarce: np.ndarray) -> np.ndarray:
    """A history member's distribution with the labels it has (almost) never seen raised to the uniform share:
    no opinion on them, instead of the near-zero that merely reflects their absence from the history."""
    if not scarce.any() or scarce.all():
        return p
    p = p.copy()
    p[scarce] = np.maximum(p[scarce], 1.0 / len(p))
    return p / p.sum()


def _duty_topic(ptype: str, ruled):
    """The (rule, unit) matched, if it is a duty topic of a complaint that is not ours (R90–R98, a real unit);
    None otherwise (a pollution rule, or R99: re-dispatch)."""
    return ruled if ptype == NOT_ENV and ruled is not None and ruled[1] in ROUTING_UNITS else None


def _in_force(meta: dict[str, Any], on: date) -> bool:
    try:
        from triage.kb.regulations import in_force

        return in_force(meta, on)
    except ImportError:  # pragma: no cover - regulations module ships with the package
        eff, rep = meta.get("effective") or "", meta.get("repealed") or ""
        return (not eff or eff <= on.isoformat()) and (not rep or on.isoformat() < rep)


@dataclass
class _Pooled:
    types: np.ndarray
    subtypes: np.ndarray


class Triager:
    def __init__(self, *, store: KnowledgeStore, embedder, settings: Settings | None = None,
                 taxonomy: Taxonomy | None = None, routing: Routing | None = None,
                 jurisdiction: str | None = None, tuned_encoder: Any = "auto", llm: Any = "auto"):
        """tuned_encoder: the office's tuned encoder (`tuning.py`); "auto" loads the one under the data directory
        (and a newer one at each retraining), None runs without it. llm: the LLM member (`llm_member.py`);
        "auto" builds it where the settings ask for it (TRIAGE_LLM_CLASSIFY and an endpoint), None runs without."""
        self.settings = settings or get_settings()
        self.store, self.embedder = store, embedder
        self.tax = taxonomy or get_taxonomy()
        self.routing = routing or get_routing()
        self.jurisdiction = jurisdiction or self.settings.jurisdiction
        self.labels = Labels.from_taxonomy(self.tax, list(UNIT_TYPES))
        self.keywords = KeywordMember(self.tax, self.labels)
        self.prototypes = PrototypeMember(self.tax, self.labels, embedder)
        self.neighbours = NeighbourMember(self.labels)
        self.regulation_votes = RegulationMember(self.tax, self.labels)
        self.linear = LinearMember(self.labels)
        self._tuned_auto = isinstance(tuned_encoder, str) and tuned_encoder == "auto"
        self._tuned_stamp: str | None = None
        self.tuned_encoder = None if self._tuned_auto else tuned_encoder
        self._tuned_id = self._fingerprint(self.tuned_encoder)  # read once, not on every suggestion
        self.tuned: TunedMember | None = None
        self.unit_names = UnitNames(self.routing.unit_aliases)
        self.named_units = NamedUnitMember(self.unit_names, self.labels.units)
        self.llm = _llm_member(self.settings) if isinstance(llm, str) and llm == "auto" else llm
        self.temperature = 1.0
        self.kind_units: dict[str, Counter] = {}
        self.n_cases = 0  # labelled past cases (with a pollution type)
        self.n_untyped = 0  # past cases with a unit but no type: they teach routing only
        self.scarce_types = np.ones(len(self.labels.types), dtype=bool)
        self._seen_count = -1
        self._refresh_pending = False
        self._refresh_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._digest = None  # (entries, vectors, titles) of the regulation digest, see _digest_vectors
        self.retrain()

    # ---------------------------------------------------------------- training
    def retrain(self) -> None:
        """Refit the history-based parts from the cases collection (after an import or a closure)."""
        data = self.store.get_all(CASES, include_embeddings=True)
        seen = len(data.get("ids") or [])
        metas = data.get("metadatas") or []
        labelled = [i for i, m in enumerate(metas) if m and m.get("pollution_type")]
        # A platform export names the handling unit but rarely the pollution type: such cases still teach routing
        # (the unit models, the units the similar cases went to, named units), not the type. Type "" and subtype
        # None mark them; the per-label models skip them there.
        used = [i for i, m in enumerate(metas)
                if m and (m.get("pollution_type") or (m.get("unit_type") or "") not in NON_ROUTING_UNITS)]
        texts = [data["documents"][i] for i in used]
        vecs = np.asarray(data["embeddings"], dtype=np.float32)[used] if used else np.zeros((0, 1))
        ys = {
            "type": [metas[i].get("pollution_type") or "" for i in used],
            "subtype": [(metas[i].get("subtype", "") or "") if metas[i].get("pollution_type") else None
                        for i in used],
            "unit": [(metas[i].get("unit_type") or "") if metas[i].get("unit_type") not in NON_ROUTING_UNITS
                     else "" for i in used],
        }
        linear = LinearMember(self.labels)
        if texts:
            linear.fit(texts, vecs, ys)
        tuned = self._fit_tuned(texts, ys)
        kinds: dict[str, Counter] = defaultdict(Counter)
        for text, t, s, u in zip(texts, ys["type"], ys["subtype"], ys["unit"]):
            if u and t:
                kinds[self._kind(t, s, self._topic_rule(text) if t == NOT_ENV else None)][u] += 1
        named = NamedUnitMember(self.unit_names, self.labels.units).fit(texts, ys["unit"], ys["type"],
                                                                        ys["subtype"])
        per_type = Counter(ys["type"])
        scarce = np.array([per_type[t] < SCARCE_TYPE_CASES for t in self.labels.types])
        with self._lock:
            self.linear, self.kind_units, self.n_cases = linear, dict(kinds), len(labelled)
            self.n_untyped = len(used) - len(labelled)
            self.tuned = tuned
            self.scarce_types = scarce
            self.named_units = named
            self._seen_count = seen
            self._digest = None  # a re-ingested digest is read again
        log.info("triage model trained on %d labelled cases (%d more teach routing only)", len(labelled),
                 len(used) - len(labelled))

    def _fit_tuned(self, texts: list[str], ys: dict[str, list[str]]) -> TunedMember | None:
        """The tuned member refit on the current cases; a newer tuned encoder on disk is loaded first."""
        stamp = tuned_stamp(self.settings) if self._tuned_auto else None
        if self._tuned_auto and stamp != self._tuned_stamp:
            self.tuned_encoder, self._tuned_stamp = load_tuned_encoder(self.settings), stamp
            self._tuned_id = self._fingerprint(self.tuned_encoder)
            self.tuned = None  # another encoder: the vectors kept per text no longer apply
        if self.tuned_encoder is None or not texts:
            return None
        member = TunedMember(self.labels, self.tuned_encoder)
        if self.tuned is not None and self.tuned.encoder is self.tuned_encoder:
            member._vectors = self.tuned._vectors
        try:
            return member.fit(texts, ys)
        except Exception:  # noqa: BLE001 - the rest of the ensemble still triages
            log.exception("the tuned member could not be refit: triaging without it")
            return None

    def refresh_if_changed(self) -> bool:
        """Retrain when the cases collection changed (closures here, imports from the CLI or another worker) or a
        newer tuned encoder was written (`triage tune`)."""
        tuned_changed = self._tuned_auto and self._tuned_stamp != tuned_stamp(self.settings)
        if self.store.count(CASES) == self._seen_count and not tuned_changed:
            return False
        self.retrain()
        return True

    def schedule_refresh(self, delay: float = 5.0) -> None:
        """Retrain soon in the background; closures in quick succession share one retraining."""
        with self._lock:
            if self._refresh_pending:
                return
            self._refresh_pending = True

        def run() -> None:
            stopping = self._stopping.wait(delay)
            with self._lock:
                self._refresh_pending = False
            if stopping:
                return  # the cases stay stored; the next start trains on them
            try:
                self.refresh_if_changed()
            except Exception:  # noqa: BLE001 - the old model keeps serving
                log.exception("background retraining failed")

        self._refresh_thread = threading.Thread(target=run, name="triage-retrain", daemon=True)
        self._refresh_thread.start()

    def stop_background(self, timeout: float = 60.0) -> None:
        """At shutdown: drop a retraining not yet started and wait for one under way. A process that exits while
        a daemon thread is inside native code (the model, scikit-learn) can crash at exit."""
        self._stopping.set()
        thread = self._refresh_thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        self._stopping.clear()  # the triager is process-wide: an app started later in this process retrains again

    def _topic_rule(self, text: str):
        """(rule, unit) of the duty-topic rule a complaint that is not ours matches, else None (R99: re-dispatch)."""
        return _duty_topic(NOT_ENV, self.routing.apply_rules(ptype=NOT_ENV, subtype="", text=text,
                                                             jurisdiction=self.jurisdiction))

    @staticmethod
    def _kind(ptype: str, subtype: str, topic) -> str:
        """The kind of complaint whose past routing is counted: the subtype, or for one that is not ours the duty
        topic it matches (`topic`, from `_topic_rule`: "not_environmental:R90"), since not-ours orders as a whole
        go everywhere."""
        if ptype == NOT_ENV:
            return f"{NOT_ENV}:{topic[0].id}" if topic else NOT_ENV
        return subtype or ptype

    @property
    def versions(self) -> dict[str, str]:
        tuned = f"+tuned-{self._tuned_id}" if self.tuned is not None and self.tuned.models else ""
        untyped = f"+{self.n_untyped}untyped" if self.n_untyped else ""
        llm = "+llm" if self.llm is not None else ""
        return {"model": f"ensemble-1+{self.embedder.model_id}{tuned}{llm}", "taxonomy": self.tax.version,
                "routing": self.routing.version, "knowledge": f"cases={self.n_cases}{untyped}",
                "jurisdiction": self.jurisdiction}

    @staticmethod
    def _fingerprint(encoder) -> str:
        """The tuning fingerprint of an encoder's model folder ("custom" where it has no manifest), with "-int8"
        where its int8 copy runs (its vectors, and so the member's answers, differ slightly from the exact ones)."""
        folder = getattr(encoder, "path", None)
        found = ((read_manifest(folder) if folder is not None else None) or {}).get("fingerprint", "custom")
        return found + ("-int8" if getattr(encoder, "int8", False) else "")

    # ---------------------------------------------------------------- inference
    def _pool(self, text: str, qvec: np.ndarray, hits: list[dict], lin: dict[str, np.ndarray],
              reg_hits: list[dict], tun: dict[str, np.ndarray] | None = None,
              llm: dict | None = None) -> tuple[_Pooled, float]:
        trust = history_trust(max((h["similarity"] for h in hits), default=None))
        kw_t, kw_s = (_floored(p, "keywords") for p in self.keywords.predict(text))
        pr_t, pr_s = self.prototypes.predict_vec(qvec)
        lt = WEIGHTS["keywords"] * np.log(kw_t) + WEIGHTS["prototypes"] * np.log(pr_t)
        ls = WEIGHTS["keywords"] * np.log(kw_s) + WEIGHTS["prototypes"] * np.log(pr_s)
        rg = self.regulation_votes.predict_hits(reg_hits)
        if rg is not None:
            lt += WEIGHTS["regulations"] * np.log(rg[0])
            ls += WEIGHTS["regulations"] * np.log(rg[1])
        nb = self.neighbours.predict_hits(hits)
        if nb is not None:
            nb_t, nb_s = (_floored(p, "neighbours") for p in nb[:2])  # the unit part is routing's business
            nb_t = _abstain_on(nb_t, self.scarce_types)
            lt += trust * WEIGHTS["neighbours"] * np.log(nb_t)
            ls += trust * WEIGHTS["neighbours"] * np.log(nb_s)
        if "type" in lin:
            lt += trust * WEIGHTS["linear"] * np.log(_abstain_on(lin["type"], self.scarce_types))
        if "subtype" in lin:
            ls += trust * WEIGHTS["linear"] * np.log(lin["subtype"])
        tun = tun or {}
        w_tuned = WEIGHTS["tuned"] * trust ** TUNED_TRUST_POWER
        if "type" in tun:
            lt += w_tuned * np.log(_abstain_on(tun["type"], self.scarce_types))
        if "subtype" in tun:
            ls += w_tuned * np.log(tun["subtype"])
        if llm is not None:  # it reads the complaint itself: no history, so no trust scaling
            vt = _one_label_vote(self.labels.types, llm["pollution_type"], LLM_SHARE)
            vs = _one_label_vote(self.labels.subtypes, llm.get("subtype") or "", LLM_SHARE)
            if vt is not None:
                lt += WEIGHTS["llm"] * np.log(vt)
            if vs is not None:
                ls += WEIGHTS["llm"] * np.log(vs)
        soft = lambda v: np.exp((v - v.max()) / self.temperature) / np.exp((v - v.max()) / self.temperature).sum()  # noqa: E731
        return _Pooled(soft(lt), soft(ls)), trust

    def _route(self, *, text: str, ptype: str, subtype: str, occurred_at: datetime | None, hits: list[dict],
               lin: dict[str, np.ndarray], trust: float,
               tun: dict[str, np.ndarray] | None = None) -> tuple[str, np.ndarray, str, np.ndarray | None]:
        """(unit, pooled unit distribution, why, support): support, the mean of the sources' unit distributions
        (similar cases, linear model, tuned model, named unit, and the rule beside them; None without history),
        ranks the alternatives (`_unit_alternatives`)."""
        units = self.labels.units
        routing_mask = np.array([u in ROUTING_UNITS for u in units], dtype=float)
        hist = None
        parts = []
        nb = self.neighbours.predict_hits([h for h in hits if h.get("unit_type") not in NON_ROUTING_UNITS])
        if nb is not None:
            parts.append(np.log(nb[2]))
        if "unit" in lin:
            parts.append(np.log(lin["unit"]))
        tun = tun or {}
        if "unit" in tun:  # CV: unit 0.878 -> 0.886, top-3 0.958 -> 0.967 with it
            parts.append(np.log(tun["unit"]))
        ruled = self.routing.apply_rules(ptype=ptype, subtype=subtype, text=text, occurred_at=occurred_at,
                                         jurisdiction=self.jurisdiction)
        topic = _duty_topic(ptype, ruled)
        kind = self.kind_units.get(self._kind(ptype, subtype, topic), Counter())
        n_kind = sum(kind.values())
        if parts:
            h = np.exp(sum(parts) / len(parts)) * routing_mask + 1e-9
            hist = h / h.sum()
        # The unit the complaint names counts only where there is history to say how this office treats names.
        named = self.unit_names.find(text)
        p_named = self.named_units.predict(named, ptype, subtype) if hist is not None else None
        named_log = NAMED_WEIGHT * np.log(p_named) if p_named is not None else 0.0
        if ruled is not None:
            prior = np.full(len(units), 0.3 / (len(units) - 1))
            prior[units.index(ruled[1])] = 0.7
        sources = ([nb[2]] if nb is not None else []) + ([lin["unit"]] if "unit" in lin else []) + (
            [tun["unit"]] if "unit" in tun else []) + ([p_named] if p_named is not None else [])
        if sources and ruled is not None:
            sources.append(prior)  # the unit the law assigns stays in view where the office's habit differs
        support = np.mean(sources, axis=0) * routing_mask if sources else None
        if ruled is None and hist is None:
            p = np.full(len(units), 1e-3)
            p[units.index("dispatch_center")] = 1.0
            return "dispatch_center", p / p.sum(), "无匹配规则，退回派单席位", None
        if ruled is not None:
            rule, rule_unit = ruled
            if hist is None or (ptype == NOT_ENV and n_kind == 0 and p_named is None):
                return rule_unit, prior, f"规则 {rule.id}：{rule.why}", support
            # History overrules the rule where this kind of complaint clearly goes elsewhere here.
            top_unit, top_n = kind.most_common(1)[0] if kind else (None, 0)
            history_wins = (n_kind >= HISTORY_MIN_CASES and top_unit != rule_unit
                            and top_n / n_kind >= HISTORY_MIN_SHARE and kind[rule_unit] / n_kind < 0.25)
            if ptype == NOT_ENV and topic is None:
                history_wins = True  # R99 only says "not ours"; where it goes is the office's practice
            # A duty topic, or a request for "the competent department", makes the rule evidence, not a prior.
            weighty = topic is not None or (named is not None and named.defers)
            w_rule = 0.0 if history_wins else TOPIC_RULE_WEIGHT if weighty else RULE_WEIGHT
            logp = w_rule * np.log(prior) + trust * np.log(hist) + named_log
            p = np.exp(logp - logp.max()) * (routing_mask + (1 - routing_mask) * (1e-6 if history_wins else 1.0))
            p = p / p.sum()
            unit = units[int(p.argmax())]
            if unit == rule_unit and (p_named is None or int(p_named.argmax()) != units.index(unit)):
                return unit, p, f"规则 {rule.id}：{rule.why}", support
        else:
            logp = np.log(hist) + named_log
            p = np.exp(logp - logp.max()) * routing_mask + 1e-12
            p = p / p.sum()
            unit = units[int(p.argmax())]
        if p_named is not None and int(p_named.argmax()) == units.index(unit):
            logp = np.log(np.maximum(p, 1e-300))
            soft = np.exp((logp - logp.max()) / NAMED_UNIT_TEMPERATURE)
            p = soft / soft.sum()
            went, total, which = self.named_units.history(named, unit, ptype, subtype)
            # Name the unit that handled them: the one named is often another (请区政府… went to 生态环境分局).
            handler = self.routing.unit_name(unit, self.jurisdiction)
            why = f"来电要求「{named.words}」处理" if named.requested else f"来电提及「{named.words}」"
            if total:  # only mentioned ("住建局电话的问题") is the weaker hint: the words say which
                why += f"（本辖区{which} {total} 件中 {went} 件由{handler}办理）"
            return unit, p, why, support
        agreeing = sum(1 for h in hits if h.get("unit_type") == unit)
        same_kind = kind.get(unit, 0)
        why = f"{agreeing} 件相似历史案件" if agreeing else f"同类历史案件 {same_kind} 件"
        if same_kind:
            why += f"（本辖区同类 {n_kind} 件中 {same_kind} 件由该单位办理）"
        return unit, p, why, support

    def suggest(self, text: str, *, occurred_at: datetime | None = None, address: str | None = None,
                vector: np.ndarray | None = None, with_regulations: bool = True, use_llm: bool = True,
                llm_opinion: dict | None = None) -> Suggestion:
        """use_llm=False leaves the LLM member out; llm_opinion: its answer when already asked (`triage eval`
        scores the system with and without it from one call)."""
        if not text or not text.strip():
            raise ValueError("text must not be empty")
        full = f"{text}（地址：{address}）" if address and address not in text else text
        qvec = vector if vector is not None else self.embedder.embed_query(complaint_for_embedding(full))
        case_hits = self.store.query(CASES, qvec, k=K_CASES)
        hits = [dict(h.metadata, id=h.id, text=h.text, similarity=h.similarity) for h in case_hits]
        lin = {k: v[0] for k, v in self.linear.predict([full], qvec[None, :]).items()}
        reg_hits = [dict(h.metadata, similarity=h.similarity)
                    for h in self.store.query(REGULATIONS, qvec, k=K_DIGEST, where={"source": "digest"})]
        tun = self.tuned.predict(full) if self.tuned is not None else {}
        versions = self.versions
        opinion = None
        if use_llm and self.llm is not None:
            opinion = llm_opinion if llm_opinion is not None else self.llm.classify(full)
            versions["llm"] = (f"{opinion['model']}/{opinion['prompt_version']}" if opinion is not None
                               else f"未参与：{getattr(self.llm, 'last_reason', None) or '无回答'}")[:200]
        pooled, trust = self._pool(full, qvec, hits, lin, reg_hits, tun, opinion)
        types, subs = self.labels.types, self.labels.subtypes
        t_idx = int(pooled.types.argmax())
        ptype = types[t_idx]
        # Subtype: best subtype within the chosen type.
        allowed = np.array([(self.tax.type_of(s) if s else NOT_ENV) == ptype for s in subs], dtype=float)
        sp = pooled.subtypes * allowed
        subtype = subs[int(sp.argmax())] if sp.sum() > 0 else self.tax.default_subtype(ptype)
        if ptype == NOT_ENV:
            subtype = ""
        unit, unit_p, decided_by, support = self._route(text=full, ptype=ptype, subtype=subtype,
                                                        occurred_at=occurred_at, hits=hits, lin=lin, trust=trust,
                                                        tun=tun)
        order = np.argsort(-pooled.types)
        alternatives = [Alternative(pollution_type=types[i], confidence=round(float(pooled.types[i]), 4))
                        for i in order[1:4]]
        if support is None:  # no history: the units the rules give the other likely kinds of complaint
            support = self._rule_support(full, pooled, occurred_at)
        if opinion is not None and opinion["unit_type"] in ROUTING_UNITS:
            support = (1 - LLM_UNIT_SHARE) * support + LLM_UNIT_SHARE * _one_label_vote(
                self.labels.units, opinion["unit_type"], 1.0)
        unit_alts = self._unit_alternatives(unit, unit_p, support)
        # A complaint that is not ours gets no environmental articles: they would only mislead the dispatcher.
        regulations = (self._regulations(qvec, occurred_at, ptype, subtype)
                       if with_regulations and ptype != NOT_ENV else [])
        confidence = float(pooled.types[t_idx])
        return Suggestion(
            pollution_type=ptype, subtype=subtype, unit_type=unit,
            unit_name=self.routing.unit_name(unit, self.jurisdiction),
            confidence=round(confidence, 4), unit_confidence=round(float(unit_p.max()), 4),
            low_confidence=confidence < LOW_CONFIDENCE,
            alternatives=alternatives, unit_alternatives=unit_alts, unit_decided_by=decided_by,
            similar_cases=[SimilarCase(id=h["id"], text=h["text"][:500], pollution_type=h.get("pollution_type"),
                                       subtype=h.get("subtype") or None, unit_type=h.get("unit_type") or None,
                                       unit_raw=h.get("unit_raw") or None, reply=(h.get("reply") or None),
                                       similarity=round(h["similarity"], 4),
                                       same_place=_repeats(text, address, ptype, subtype, h)) for h in hits[:5]],
            regulations=regulations, versions=versions,
        )

    def _unit_alternatives(self, unit: str, unit_p: np.ndarray, support: np.ndarray) -> list[Alternative]:
        """The units a dispatcher should see beside the suggestion, most likely first.

        The suggested unit comes from a product of the evidence (`_route`), where a unit that only one source backs
        (the similar cases, the linear model, the unit the caller named, or the routing rule) ends up far down.
        Alternatives come from the sources' plain mean instead, so that each source's best guess gets listed (Haikou
        5-fold CV: unit top-3 0.942 → 0.948, 4 more orders, no fold worse; the rule as a source: +2 orders, none
        lost); their confidence is that mean's probability."""
        units = self.labels.units
        order = np.lexsort((-unit_p, -support))  # ties (units no source backs) by the pooled probability
        chosen = [i for i in order if units[i] != unit][:ALTERNATIVES]
        return [Alternative(unit_type=units[i], confidence=round(float(support[i]), 4)) for i in chosen]

    def _rule_support(self, text: str, pooled: _Pooled, occurred_at: datetime | None) -> np.ndarray:
        """P(unit) when only the rules route: each likely kind of complaint sends its probability to the unit its
        rule names, so a complaint that may be noise or dust lists both units. P(kind) = P(type) from the type
        pool (the one shown) × P(subtype | type) from the subtype pool."""
        units, subs = self.labels.units, self.labels.subtypes
        type_of = [self.tax.type_of(code) if code else NOT_ENV for code in subs]
        p_sub = np.zeros(len(subs))
        for t, p_t in zip(self.labels.types, pooled.types):
            idx = [j for j, tt in enumerate(type_of) if tt == t]
            if idx:
                within = pooled.subtypes[idx]
                p_sub[idx] = p_t * within / within.sum()
        p = np.zeros(len(units))
        for j in np.argsort(-p_sub)[:8]:
            ruled = self.routing.apply_rules(ptype=type_of[j], subtype=subs[j], text=text, occurred_at=occurred_at,
                                             jurisdiction=self.jurisdiction)
            p[units.index(ruled[1] if ruled else "dispatch_center")] += p_sub[j]
        return p / p.sum()

    def _digest_vectors(self):
        """The digest's entries with their vectors, read once (about a hundred) and searched in memory: a second
        Chroma query per suggestion cost 3.5 ms. Read again after a retraining."""
        cached = self._digest
        if cached is None:
            entries, vecs = self.store.vectors_where(REGULATIONS, {"source": "digest"})
            titles = [str(h.metadata.get("title") or "") for h in entries]
            cached = self._digest = (entries, vecs, titles)
        return cached

    def _curated_hits(self, qvec: np.ndarray, subtype: str, on: date) -> list:
        """Our digest's entries for the subtype, valid on the facts' date, nearest first. The digest is stored
        under the Code's articles; for facts before 2026-08-15 an entry stands for the single-law article it
        replaces (its 原依据), so the hit is relabelled with that article and its dates. Without this, a
        complaint about March 2026 was shown no article at all."""
        from triage.drafting.basis import curated_for

        wanted: dict[str, list] = {}
        for e in curated_for(subtype, on, general=False):
            wanted.setdefault(e.title, []).append(e)
        if not wanted:
            return []
        entries, vecs, titles = self._digest_vectors()
        mine = [i for i, t in enumerate(titles) if t in wanted]
        if not mine:
            return []
        sims = vecs[mine] @ np.asarray(qvec, dtype=np.float32)
        hits = []
        for j in np.argsort(-sims):
            h = entries[mine[j]]
            for e in wanted[titles[mine[j]]]:
                meta = {**h.metadata, "law": e.law, "article": e.article, "article_no": e.article_no,
                        "effective": e.valid_from.isoformat() if e.valid_from else "",
                        "repealed": e.valid_until.isoformat() if e.valid_until else ""}
                hits.append(replace(h, metadata=meta, similarity=float(sims[j])))
        return hits[:CURATED_FIRST]

    def _regulations(self, qvec: np.ndarray, occurred_at: datetime | None, ptype: str,
                     subtype: str) -> list[CitedRegulation]:
        """The articles in force a dispatcher sees as evidence: first our digest's articles for the suggested
        subtype, then the nearest articles. Nearness alone listed vehicle exhaust and electromagnetic radiation for
        a cooking-fumes complaint (e5 puts every article of the digest at about the same distance). A digest
        entry tagged for other subtypes is left out (a cooking-fumes complaint was shown the VOC, straw-burning
        and exhaust articles of its own type); statute text (untagged) is kept by nearness."""
        on = (occurred_at or datetime.now()).date()
        hits = self._curated_hits(qvec, subtype, on) + self.store.query(REGULATIONS, qvec, k=K_REGULATIONS * 2)
        generic = not subtype or subtype == ptype or subtype.endswith(".other")
        out = []
        cited: set[tuple[str, str]] = set()
        for h in hits:
            m = h.metadata
            key = (m.get("law", ""), m.get("article", ""))
            if key in cited:
                continue  # the digest splits one article into its provisions; list the article once, best first
            tags = {t for t in str(m.get("subtypes") or "").split(",") if t}
            if tags and "general" not in tags and subtype not in tags and not (
                    generic and ptype in {t.split(".")[0] for t in tags}):
                continue  # our digest says this article governs other kinds of complaint
            force = _in_force(m, on)
            if not force:
                continue  # replies cite the law in force on the date of the facts
            if not self.routing.local_rule_applies(m, self.jurisdiction):
                continue  # another province's or city's regulation does not bind this office
            cited.add(key)
            digest = m.get("source") == "digest"
            out.append(CitedRegulation(law=m.get("law", ""), article=m.get("article", ""),
                                       article_no=m.get("article_no"), text=h.text[:600], in_force=force,
                                       similarity=round(h.similarity, 4),
                                       source="digest" if digest else "statute"))
            if len(out) >= K_REGULATIONS // 2 + 1:
                break
        return out


def _repeats(text: str, address: str | None, ptype: str, subtype: str, case: dict) -> bool:
    """A past case at the same place about the same problem, by the test that flags relapses in the queue."""
    other = case.get("text") or ""
    return dup.is_relapse(dup.text_similarity(text, other),
                          dup.place_similarity(address, text, case.get("address") or None, other),
                          dup.same_problem(ptype, subtype, case.get("pollution_type"), case.get("subtype")))


def _llm_member(settings: Settings):
    """The LLM member where the office asks for it and an endpoint is configured; None otherwise."""
    if not settings.llm_classify:
        return None
    from triage.classify.llm_member import LLMClassifier

    member = LLMClassifier(settings)
    if not member.enabled:
        log.warning("TRIAGE_LLM_CLASSIFY is set but no LLM endpoint is (TRIAGE_LLM_BASE_URL, TRIAGE_LLM_MODEL): "
                    "triaging without the LLM member")
        return None
    return member


_triager: Triager | None = None
_triager_lock = threading.Lock()


def get_triager(settings: Settings | None = None) -> Triager:
    """Process-wide triager over the configured store and embedder (built on first use)."""
    global _triager
    with _triager_lock:
        if _triager is None:
            from triage.embeddings import get_embedder
            from triage.kb.regulations import ensure_default_knowledge
            from triage.kb.store import get_store

            settings = settings or get_settings()
            t0 = time.perf_counter()
            store, embedder = get_store(settings), get_embedder(settings)
            # A server started without `triage init` (uvicorn --factory) would cite no article: the first
            # triage ingests the digest into an empty regulations collection, as the knowledge API does.
            ensure_default_knowledge(settings, store, embedder)
            _triager = Triager(store=store, embedder=embedder, settings=settings)
            log.info("triager ready in %.1fs", time.perf_counter() - t0)
        return _triager


def loaded_triager() -> Triager | None:
    """The process-wide triager if it has been built (never builds it)."""
    return _triager


def reset_triager() -> None:
    global _triager
    with _triager_lock:
        _triager = None
