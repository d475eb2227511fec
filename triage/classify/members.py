"""Ensemble members. Each returns probability distributions over a fixed label list.

- KeywordMember: the taxonomy's signal words (cold start; works for any writing style).
- PrototypeMember: similarity of the complaint to each subtype's description and examples (zero-shot).
- NeighbourMember: similarity-weighted votes of the nearest past cases (from Chroma).
- LinearMember: logistic regression over character n-grams + the embedding, trained on past cases.
- TunedMember: logistic regression over the vectors of the encoder fine-tuned on past cases (`triage tune`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from triage.embeddings import complaint_for_embedding
from triage.taxonomy import NOT_ENV, Taxonomy

EPS = 1e-4
# The opening of a complaint (a title, or the agent's first sentence) names the main problem; later
# sentences often mention side issues. Hits there count double.
LEAD_CHARS = 60
_BOILERPLATE = re.compile(r"^(市民来电反映|来电人反映|市民反映|网友反映|来电反映)[:：，,\s]*")


def normalise(text: str) -> str:
    return _BOILERPLATE.sub("", text.strip())


_SENTENCE_END = re.compile(r"[。！？!?\n]")


def first_sentence(text: str) -> str:
    """The complaint's first sentence, after the hotline's "市民来电反映：" preamble."""
    return _SENTENCE_END.split(normalise(text), maxsplit=1)[0].strip()


def _normalise_rows(p: np.ndarray) -> np.ndarray:
    p = np.maximum(p, 0) + EPS
    return p / p.sum(axis=-1, keepdims=True)


@dataclass
class Labels:
    """Fixed orders of the label spaces, shared by all members."""

    types: list[str]
    subtypes: list[str]  # "" = no subtype (not_environmental)
    units: list[str]

    @classmethod
    def from_taxonomy(cls, tax: Taxonomy, units: list[str]) -> "Labels":
        return cls(types=tax.type_codes, subtypes=[""] + list(tax.subtypes), units=list(units))


LabelModels = dict[str, tuple[LogisticRegression, list[int]]]  # label kind → (model, its classes' label indices)


def _fit_per_label(X, targets: dict[str, list[str]], labels: Labels, min_cases: int) -> LabelModels:
    """One logistic regression per label kind ("type", "subtype", "unit") over the rows that carry that label; a
    kind with fewer rows than min_cases, or a single class, gets none. "" is no unit, but a real subtype label
    (not ours); None is no subtype (a case whose type is unknown)."""
    spaces = {"type": labels.types, "subtype": labels.subtypes, "unit": labels.units}
    models: LabelModels = {}
    for key, ys in targets.items():
        space = spaces[key]
        rows = [i for i, y in enumerate(ys) if y is not None and y in space and not (key == "unit" and y == "")]
        if len(rows) < min_cases or len({ys[i] for i in rows}) < 2:
            continue
        model = LogisticRegression(max_iter=3000, C=10.0).fit(X[rows], [ys[i] for i in rows])
        models[key] = (model, [space.index(c) for c in model.classes_])
    return models


def _predict_per_label(models: LabelModels, X, labels: Labels) -> dict[str, np.ndarray]:
    """Rows of probabilities over each label kind's whole space (classes a model never saw get EPS)."""
    sizes = {"type": len(labels.types), "subtype": len(labels.subtypes), "unit": len(labels.units)}
    out = {}
    for key, (model, cols) in models.items():
        p = np.zeros((X.shape[0], sizes[key]))
        p[:, cols] = model.predict_proba(X)
        out[key] = _normalise_rows(p)
    return out


class KeywordMember:
    name = "keywords"

    def __init__(self, tax: Taxonomy, labels: Labels, temperature: float = 2.0):
        self.tax, self.labels, self.temperature = tax, labels, temperature
        self.sub_words = {s: self.tax.subtypes[s].keywords for s in labels.subtypes if s}
        self.not_env_words = tax.types[NOT_ENV]["keywords"]

    def scores(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        text = normalise(text).lower()
        lead = text[:LEAD_CHARS]
        sub = np.zeros(len(self.labels.subtypes))
        hits: list[str] = []
        for j, s in enumerate(self.labels.subtypes):
            words = self.sub_words.get(s) if s else self.not_env_words
            for w, weight in (words or {}).items():
                wl = w.lower()
                if wl in text:
                    sub[j] += weight * (2.0 if wl in lead else 1.0)
                    hits.append(w)
        typ = np.zeros(len(self.labels.types))
        for j, s in enumerate(self.labels.subtypes):
            t = self.tax.type_of(s) if s else NOT_ENV
            typ[self.labels.types.index(t)] += sub[j]
        env = 0.0
        for word, weight in self.tax.environmental_signals.items():
            if word.lower() in text:
                env += weight
                hits.append(word)
        if env:
            typ += env * np.array([t != NOT_ENV for t in self.labels.types], dtype=float)
        return typ, sub, hits

    def predict(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        typ, sub, _ = self.scores(text)
        p_typ = self._to_prob(typ, self.labels.types.index(NOT_ENV))
        p_sub = self._to_prob(sub, 0)
        first = first_sentence(text)
        if first and first != text.strip():
            # The first sentence (a title, or the agent's summary) names the main problem; a long letter goes on
            # to side issues that can outvote it. Pool both readings (geometric mean); a first sentence with no
            # signal word leans mildly towards "not ours", as the whole text does.
            f_typ, _, _ = self.scores(first)
            p_typ = _normalise_rows(np.sqrt(p_typ * self._to_prob(f_typ, self.labels.types.index(NOT_ENV))))
        return p_typ, p_sub

    def _to_prob(self, s: np.ndarray, none_index: int) -> np.ndarray:
        if s.max() <= 0:
            # No signal word at all: most likely not an environmental complaint, but only mildly so.
            p = np.full(len(s), 1.0)
            p[none_index] = 3.0
            return _normalise_rows(p)
        return _normalise_rows(np.exp((s - s.max()) / self.temperature))


class PrototypeMember:
    """Zero-shot: similarity of the complaint to each label's description and example complaints (taxonomy.yaml).

    A label scores the mean of its two closest prototypes: one lucky example alone does not decide, and a label
    described in several phrasings is recognised in each of them."""

    name = "prototypes"
    TOP = 2

    def __init__(self, tax: Taxonomy, labels: Labels, embedder, temperature: float = 0.015):
        self.labels, self.temperature, self.tax = labels, temperature, tax
        codes: list[str] = []
        texts: list[str] = []
        for code in labels.subtypes:
            if code:
                s = tax.subtypes[code]
                name, description, examples = s.name, s.description, s.examples
            else:
                t = tax.types[NOT_ENV]
                name, description, examples = t["name"], t["description"], t.get("examples", ())
            for text in (f"{name}：{description}", *examples):
                codes.append(code)
                texts.append(text)
        codes_idx = np.array([labels.subtypes.index(c) for c in codes])
        self._groups = [np.flatnonzero(codes_idx == j) for j in range(len(labels.subtypes))]  # rows per label
        self.vectors = embedder.embed_passages(texts)
        self._type_of = np.array([labels.types.index(tax.type_of(c) if c else NOT_ENV) for c in labels.subtypes])

    def predict_vec(self, qvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = self.vectors @ qvec
        sub = np.full(len(self.labels.subtypes), -1.0)
        for j, rows in enumerate(self._groups):
            if len(rows):
                sub[j] = float(np.sort(sims[rows])[-self.TOP:].mean())
        typ = np.full(len(self.labels.types), -1.0)
        np.maximum.at(typ, self._type_of, sub)
        soft = lambda v: _normalise_rows(np.exp((v - v.max()) / self.temperature))  # noqa: E731
        return soft(typ), soft(sub)


class NeighbourMember:
    name = "neighbours"

    def __init__(self, labels: Labels, temperature: float = 0.05):
        self.labels, self.temperature = labels, temperature

    def predict_hits(self, hits: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """hits: [{similarity, pollution_type, subtype, unit_type}], best first. A hit with a unit but no type votes
        for its unit only; with no typed hit the type and subtype distributions are flat (they then add nothing
        to the pool)."""
        voting = [h for h in hits if h.get("pollution_type") or h.get("unit_type") in self.labels.units]
        if not voting:
            return None
        top = max(h["similarity"] for h in voting)
        typ = np.zeros(len(self.labels.types))
        sub = np.zeros(len(self.labels.subtypes))
        unit = np.zeros(len(self.labels.units))
        for h in voting:
            w = float(np.exp((h["similarity"] - top) / self.temperature))
            if h.get("pollution_type") in self.labels.types:
                typ[self.labels.types.index(h["pollution_type"])] += w
            if h.get("pollution_type") and (h.get("subtype") or "") in self.labels.subtypes:
                sub[self.labels.subtypes.index(h.get("subtype") or "")] += w
            if h.get("unit_type") in self.labels.units:
                unit[self.labels.units.index(h["unit_type"])] += w
        unit_p = _normalise_rows(unit) if unit.sum() > 0 else np.full(len(unit), 1.0 / len(unit))
        return _normalise_rows(typ), _normalise_rows(sub), unit_p


class LinearMember:
    """Logistic regression on character 1–3-grams plus the sentence embedding."""

    name = "linear"
    MIN_CASES = 20

    def __init__(self, labels: Labels):
        self.labels = labels
        self.vectorizer: TfidfVectorizer | None = None
        self.models: LabelModels = {}

    def _features(self, texts: list[str], vecs: np.ndarray, fit: bool = False):
        texts = [normalise(t) for t in texts]
        if fit:
            self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True,
                                              max_features=200_000)
            grams = self.vectorizer.fit_transform(texts)
        else:
            grams = self.vectorizer.transform(texts)
        return hstack([grams, csr_matrix(np.asarray(vecs, dtype=np.float64))]).tocsr()

    def fit(self, texts: list[str], vecs: np.ndarray, targets: dict[str, list[str]]) -> "LinearMember":
        """targets: {"type": [...], "subtype": [...], "unit": [...]} aligned with texts; "" unit = unknown."""
        if len(texts) < self.MIN_CASES:
            return self  # too few to learn from (and too few for the n-gram vocabulary: min_df=2 needs 2 texts)
        self.models = _fit_per_label(self._features(texts, vecs, fit=True), targets, self.labels, self.MIN_CASES)
        return self

    def predict(self, texts: list[str], vecs: np.ndarray) -> dict[str, np.ndarray]:
        if not self.models:
            return {}
        return _predict_per_label(self.models, self._features(texts, vecs), self.labels)


class RegulationMember:
    """Votes of the nearest articles of the project's regulation digest, each tagged with the subtypes it governs.

    The digest is written per pollution source, so it carries knowledge that an office's history may lack."""

    name = "regulations"

    def __init__(self, tax: Taxonomy, labels: Labels, temperature: float = 0.03):
        self.tax, self.labels, self.temperature = tax, labels, temperature

    def predict_hits(self, hits: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
        tagged = [(h, [s for s in (h.get("subtypes") or "").split(",") if s in self.labels.subtypes])
                  for h in hits]
        tagged = [(h, subs) for h, subs in tagged if subs]
        if not tagged:
            return None
        top = max(h["similarity"] for h, _ in tagged)
        typ = np.zeros(len(self.labels.types))
        sub = np.zeros(len(self.labels.subtypes))
        for h, subs in tagged:
            w = float(np.exp((h["similarity"] - top) / self.temperature)) / len(subs)
            for code in subs:
                sub[self.labels.subtypes.index(code)] += w
                typ[self.labels.types.index(self.tax.type_of(code))] += w
        typ, sub = typ + 0.05 * typ.sum(), sub + 0.05 * sub.sum()
        # The digest only knows pollution sources: it says which source, not whether the order is ours at all.
        # Keep it neutral on "not environmental" by giving that class the mass of its best competitor.
        typ[self.labels.types.index(NOT_ENV)] = typ.max()
        sub[self.labels.subtypes.index("")] = sub.max()
        return _normalise_rows(typ), _normalise_rows(sub)


class TunedMember:
    """Logistic regression over the vectors of the office's tuned encoder (`tuning.py`).

    The encoder is fine-tuned now and then (`triage tune`); the regression is refit at every retraining, on all
    current cases. Vectors are kept per text, so a retraining encodes only the cases added since the last one."""

    name = "tuned"
    MIN_CASES = LinearMember.MIN_CASES

    def __init__(self, labels: Labels, encoder):
        self.labels, self.encoder = labels, encoder
        self.models: LabelModels = {}
        self._vectors: dict[str, np.ndarray] = {}

    def vectors(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            fresh = self.encoder.embed_queries([complaint_for_embedding(t) for t in todo])
            self._vectors.update(zip(todo, fresh))
        return np.array([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.encoder.dim))

    def fit(self, texts: list[str], targets: dict[str, list[str]]) -> "TunedMember":
        if len(texts) < self.MIN_CASES:
            return self
        X = self.vectors(texts)
        self._vectors = {t: v for t, v in zip(texts, X)}  # cases deleted since are forgotten
        self.models = _fit_per_label(X, targets, self.labels, self.MIN_CASES)
        return self

    def predict(self, text: str) -> dict[str, np.ndarray]:
        if not self.models:
            return {}
        x = self.encoder.embed_query(complaint_for_embedding(text))
        return {key: p[0] for key, p in _predict_per_label(self.models, x[None, :], self.labels).items()}
