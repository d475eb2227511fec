"""`triage eval`: the system against a TF-IDF + logistic-regression baseline, both trained on the same TRAIN.

Everything happens in a temporary directory: a fresh Chroma with the project's own knowledge plus TRAIN's cases,
and the embedding model too where the machine's model cache does not hold it yet (CONTRACT.md: eval writes
nowhere but there and OUT). Both sides learn from the same TRAIN rows: those `triage cases import` would store
(a row it rejects, or a repeated order_id, was taught to the baseline only). Rows left out are counted on stderr.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from triage.embeddings import complaint_for_embedding
from triage.kb.cases import _cell, _records, infer_unit_types, read_cases_file, store_cases
from triage.kb.store import KnowledgeStore, make_client
from triage.settings import Settings
from triage.taxonomy import NON_ROUTING_UNITS, NOT_ENV, UNIT_TYPES, get_taxonomy

log = logging.getLogger(__name__)
MIN_CLASS_ROWS_F1 = 5


def read_test_rows(path: Path, *, skipped: list[int] | None = None,
                   unknown: dict[str, set[str]] | None = None) -> list[dict[str, str]]:
    """The rows with text, each with ``row``: its line in the file as a spreadsheet numbers it (the header is
    row 1). Row numbers without text are appended to ``skipped`` when given.

    Labels are read as the import reads them: case and spaces do not matter ("NOISE"), and a row with a subtype
    but no type gets the subtype's type. A label that is no code of LABELS.md is kept as it is (it can only be
    scored wrong) and listed in ``unknown`` (label column → values), so the caller can say so."""
    tax = get_taxonomy()
    codes = {"pollution_type": set(tax.types) | {NOT_ENV}, "subtype": set(tax.subtypes) | {NOT_ENV},
             "unit_type": set(UNIT_TYPES)}
    rows = []
    for n, rec in _records(Path(path)):
        text, title = _cell(rec, "text"), _cell(rec, "title")
        if title and title not in text:
            text = f"{title}。{text}"
        if not text:
            if skipped is not None:
                skipped.append(n)
            continue
        labels = {k: _cell(rec, k).strip().lower() for k in codes}
        if labels["subtype"] == NOT_ENV:
            labels["subtype"] = ""  # LABELS.md's not_environmental has no subtype; the system answers ""
        if not labels["pollution_type"] and labels["subtype"] in tax.subtypes:
            labels["pollution_type"] = tax.type_of(labels["subtype"])
        for k, v in labels.items():
            if v and v not in codes[k] and unknown is not None:
                unknown.setdefault(k, set()).add(v)
        rows.append({"row": n, "text": text, **labels})
    return rows


class Baseline:
    """Character 1–3-gram TF-IDF + logistic regression, one model per label."""

    def fit(self, texts: list[str], types: list[str], units: list[str]) -> "Baseline":
        self.vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        X = self.vec.fit_transform(texts)
        typed = [i for i, t in enumerate(types) if t]
        if len({types[i] for i in typed}) < 2:
            raise ValueError("TRAIN 中已标注污染类型的行不足两类，无法训练基线 / TRAIN needs labelled rows of at "
                             "least two pollution types")
        self.type_model = LogisticRegression(max_iter=2000, C=10.0).fit(X[typed], [types[i] for i in typed])
        rows = [i for i, u in enumerate(units) if u and u not in NON_ROUTING_UNITS]
        self.unit_model = (LogisticRegression(max_iter=2000, C=10.0).fit(X[rows], [units[i] for i in rows])
                           if len({units[i] for i in rows}) >= 2 else None)
        return self

    def predict(self, texts: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
        X = self.vec.transform(texts)
        types = list(self.type_model.predict(X))
        if self.unit_model is None:
            return types, [""] * len(texts), [[] for _ in texts]
        P = self.unit_model.predict_proba(X)
        cls = self.unit_model.classes_
        top = [[cls[j] for j in np.argsort(-p)[:3]] for p in P]
        return types, [t[0] for t in top], top


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


def score(rows: list[dict], types: list[str], subtypes: list[str] | None, units: list[str],
          unit_top3: list[list[str]], seconds: float | None, confidences: list[float] | None = None,
          unit_confidences: list[float] | None = None) -> dict:
    truth = [r["pollution_type"] for r in rows]
    lab = [i for i, t in enumerate(truth) if t]
    out: dict[str, Any] = {}
    acc = lambda idx, pred, gold: float(np.mean([pred[i] == gold[i] for i in idx])) if idx else None  # noqa: E731
    out["type_accuracy"] = acc(lab, types, truth)
    counts = {c: sum(1 for i in lab if truth[i] == c) for c in set(truth[i] for i in lab)}
    f1_classes = sorted(c for c, n in counts.items() if n >= MIN_CLASS_ROWS_F1)
    out["type_macro_f1"] = (float(f1_score([truth[i] for i in lab], [types[i] for i in lab], labels=f1_classes,
                                           average="macro", zero_division=0)) if f1_classes else None)
    if subtypes is not None:
        # Over the rows whose subtype is known: a file without a subtype column scored every environmental row
        # wrong (subtype 0.533 beside type 0.967). A not_environmental row has none to know.
        sub_rows = [i for i in lab if rows[i]["subtype"] or truth[i] == NOT_ENV]
        if not any(rows[i]["subtype"] for i in sub_rows):
            sub_rows = []
        out["subtype_accuracy"] = acc(sub_rows, subtypes, [r["subtype"] for r in rows])
    unit_rows = [i for i, r in enumerate(rows) if r["unit_type"] and r["unit_type"] not in NON_ROUTING_UNITS]
    gold_units = [r["unit_type"] for r in rows]
    out["unit_accuracy"] = acc(unit_rows, units, gold_units)
    out["unit_top3_accuracy"] = (float(np.mean([gold_units[i] in unit_top3[i] for i in unit_rows]))
                                 if unit_rows else None)
    out["n_unit"] = len(unit_rows)
    ne = [i for i in lab if truth[i] == NOT_ENV]
    out["not_environmental_recall"] = float(np.mean([types[i] == NOT_ENV for i in ne])) if ne else None
    out["seconds_per_complaint"] = seconds
    if confidences is not None and lab:
        conf = np.array([confidences[i] for i in lab])
        correct = np.array([types[i] == truth[i] for i in lab], dtype=float)
        out["type_ece"] = expected_calibration_error(conf, correct)
    if unit_confidences is not None and unit_rows:
        # The unit confidence gates bulk dispatch (LOW_UNIT_CONFIDENCE), so its calibration is reported too.
        out["unit_ece"] = expected_calibration_error(np.array([unit_confidences[i] for i in unit_rows]),
                                                     np.array([units[i] == gold_units[i] for i in unit_rows],
                                                              dtype=float))
    return out


def _model_cache_or_temp(settings: Settings, tmp: Path) -> Settings:
    """The settings to load the embedding model with: the machine's model cache where it already holds the model
    (and its ONNX export, with that backend), else a cache under ``tmp``, discarded with it. The first eval on a
    fresh machine built both into ~/.cache, outside the temporary directory the contract allows."""
    from triage.embeddings import default_model_dir, onnx_path_for

    model = Path(settings.embedding_model).expanduser() if settings.embedding_model else default_model_dir(settings)
    ready = (model / "modules.json").exists() and (
        settings.embedding_backend != "onnx" or onnx_path_for(model, settings).exists())
    if ready:
        return settings
    log.warning("the model cache %s does not hold the embedding model yet: building it in the temporary "
                "directory for this run (run `triage init` once to keep it)", settings.model_cache_dir)
    return settings.model_copy(update={"model_cache_dir": tmp / "models"})


def evaluate(train: Path, test: Path, *, settings: Settings, predictions: Path | None = None,
             embedder=None, progress=None, tune: bool = True, tune_progress=None,
             keep_tuned: Path | None = None) -> dict[str, Any]:
    """tune: fine-tune the encoder on TRAIN first (the tuned member, `tuning.py`), as an office would run
    `triage tune` on its history; it costs minutes (about five per 900 TRAIN cases on two cores).
    keep_tuned: a folder to keep the tuned encoder in (the benchmark times triage with it); default: discarded."""
    from triage.classify.service import Triager
    from triage.embeddings import get_embedder

    skipped: list[int] = []
    unknown: dict[str, set[str]] = {}
    rows = read_test_rows(test, skipped=skipped, unknown=unknown)
    if skipped:
        log.warning("%s: %d rows without text are not classified (rows %s)", test, len(skipped),
                    ", ".join(map(str, skipped[:20])) + (" …" if len(skipped) > 20 else ""))
    for column, values in sorted(unknown.items()):
        log.warning("%s: %s values that are no LABELS.md code are scored as wrong: %s", test, column,
                    ", ".join(sorted(values)[:10]) + (" …" if len(values) > 10 else ""))
    if not rows:
        raise ValueError(f"{test}: no test rows with text")
    train_rows, rejected = read_cases_file(Path(train))
    if not train_rows:
        raise ValueError(f"{train}: no usable training cases ({len(rejected)} rejected)")
    if rejected:
        log.warning("%s: %d of %d rows are left out of training, for the system and the baseline alike (as "
                    "`triage cases import` would refuse them): %s", train, len(rejected),
                    len(rejected) + len(train_rows),
                    "; ".join(f"row {e.row}: {e.reason}" for e in rejected[:5]) + (" …" if len(rejected) > 5 else ""))
    infer_unit_types(train_rows)
    with tempfile.TemporaryDirectory(prefix="triage-eval-") as tmp:
        if embedder is None:
            settings = _model_cache_or_temp(settings, Path(tmp))
            embedder = get_embedder(settings)
        store = KnowledgeStore(make_client(Settings(data_dir=Path(tmp), chroma=str(Path(tmp) / "chroma"))))
        try:
            from triage.kb.regulations import ingest_default_knowledge

            ingest_default_knowledge(settings, store=store, embedder=embedder)
        except ImportError:
            log.warning("regulation digest not available: evaluating without it")
        store_cases(train_rows, store=store, embedder=embedder)
        tuned = None
        if tune:
            from triage.classify.tuning import MIN_TUNING_CASES, fine_tune, labelled_cases, open_tuned_encoder
            from triage.embeddings import ensure_model

            texts, targets = labelled_cases(store)
            if len(texts) >= MIN_TUNING_CASES:
                target = Path(keep_tuned) if keep_tuned else Path(tmp) / "tuned-encoder"
                fine_tune(texts, targets, base=ensure_model(settings), target=target, progress=tune_progress)
                # Its ONNX export goes to the temporary directory too: eval writes nowhere else.
                local = settings.model_copy(update={"data_dir": Path(tmp), "model_cache_dir": Path(tmp) / "models"})
                tuned = open_tuned_encoder(target, local)
        triager = Triager(store=store, embedder=embedder, settings=settings, tuned_encoder=tuned)
        texts = [r["text"] for r in rows]
        t0 = time.perf_counter()
        vecs = embedder.embed_queries([complaint_for_embedding(t) for t in texts])
        sys_types, sys_subs, sys_units, sys_top3, conf, unit_conf = [], [], [], [], [], []
        # With the LLM member on, the same answers are scored without it too, so the table shows whether it earns
        # its place on this office's complaints (WEIGHTS["llm"] and LLM_SHARE are priors, not measurements).
        plain: list = [] if triager.llm is not None else None
        llm_failures = 0
        for i, (text, vec) in enumerate(zip(texts, vecs)):
            opinion = triager.llm.classify(text) if triager.llm is not None else None
            s = triager.suggest(text, vector=vec, llm_opinion=opinion)
            if plain is not None:
                llm_failures += opinion is None
                t_plain = time.perf_counter()
                plain.append(triager.suggest(text, vector=vec, use_llm=False, with_regulations=False))
                t0 += time.perf_counter() - t_plain  # the system's time per complaint is its own
            sys_types.append(s.pollution_type)
            sys_subs.append(s.subtype)
            sys_units.append(s.unit_type)
            sys_top3.append([s.unit_type] + [a.unit_type for a in s.unit_alternatives][:2])
            conf.append(s.confidence)
            unit_conf.append(s.unit_confidence)
            if progress:
                progress(i + 1, len(rows))
        per = (time.perf_counter() - t0) / len(rows)
        # The baseline learns what the system learns, from the same rows: types from labelled rows only (an
        # unlabelled row is not a not_environmental one), units from every row that names one.
        base = Baseline().fit([r.text for r in train_rows], [r.pollution_type for r in train_rows],
                              [r.unit_type for r in train_rows])
        t1 = time.perf_counter()
        b_types, b_units, b_top3 = base.predict(texts)
        b_per = (time.perf_counter() - t1) / len(rows)
    result = {
        "n_test": len(rows),
        "system": score(rows, sys_types, sys_subs, sys_units, sys_top3, per, conf, unit_conf),
        "baseline": score(rows, b_types, None, b_units, b_top3, b_per),
    }
    if plain is not None:
        result["system_without_llm"] = score(
            rows, [s.pollution_type for s in plain], [s.subtype for s in plain], [s.unit_type for s in plain],
            [[s.unit_type] + [a.unit_type for a in s.unit_alternatives][:2] for s in plain], None,
            [s.confidence for s in plain], [s.unit_confidence for s in plain])
        result["llm_unanswered"] = llm_failures  # rows the LLM did not answer (time, error, unknown code)
        if llm_failures:
            log.warning("the LLM member did not answer %d of %d rows", llm_failures, len(rows))
    if predictions:
        with open(predictions, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "pollution_type", "subtype", "unit_type", "confidence",
                        "baseline_pollution_type", "baseline_unit_type"])
            lines = [(r["row"], [sys_types[i], sys_subs[i], sys_units[i], f"{conf[i]:.4f}", b_types[i], b_units[i]])
                     for i, r in enumerate(rows)] + [(n, [""] * 6) for n in skipped]
            for n, cells in sorted(lines, key=lambda x: x[0]):  # one row per TEST row, in file order
                w.writerow([n, *cells])
    return result
