"""Triage benchmark: cross-validated quality against the TF-IDF baseline, the cold start, and latency.

    python bench/triage.py [--folds 5] [--skip-latency] [--no-tune]

- In-domain: stratified k-fold over the Haikou dev orders (train on k-1 folds, test on the rest), the system
  and the TF-IDF + logistic-regression baseline trained on the same folds (`triage eval` on each split).
- Cold start: train on Haikou, test on the message-board posts (taidi replies file).
- Label consistency: how often the office itself labelled near-identical orders differently (a ceiling).
- Latency: one complaint through intake (store → embed → Chroma cases + regulations → ensemble → router →
  database write), p50/p95 over real complaints, on this machine's cores.
- Ablation: every run also without the tuned member (the encoder fine-tuned on the training part), so the member
  shows what it earns; tuning costs about five minutes per fold on two cores (`--no-tune` skips it).
Embeddings of the base model are cached by text across folds (the same model, computed once).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.classify.evaluate import evaluate  # noqa: E402
from triage.embeddings import get_embedder  # noqa: E402
from triage.settings import Settings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HAIKOU = SHARED / "cases" / "haikou12345_env_dev.csv"
TAIDI = SHARED / "replies" / "taidi2020_env_replies_dev.csv"
KEYS = ["type_accuracy", "type_macro_f1", "subtype_accuracy", "unit_accuracy", "unit_top3_accuracy",
        "not_environmental_recall", "type_ece", "unit_ece", "seconds_per_complaint"]


class CachedEmbedder:
    """The real embedder with a text → vector cache (folds re-use the same texts)."""

    def __init__(self, inner):
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def _get(self, kind: str, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if (kind, t) not in self.cache]
        if todo:
            vecs = (self.inner.embed_queries if kind == "q" else self.inner.embed_passages)(todo)
            self.cache.update({(kind, t): v for t, v in zip(todo, vecs)})
        return np.array([self.cache[(kind, t)] for t in texts]) if texts else np.zeros((0, self.dim))

    def embed_queries(self, texts, progress=False):
        return self._get("q", list(texts))

    def embed_passages(self, texts, progress=False):
        return self._get("p", list(texts))

    def embed_query(self, text):
        return self.embed_queries([text])[0]


def write_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)


def latency(n: int, tuned_dir: Path | None) -> tuple[float, float, float]:
    from triage.classify.service import Triager
    from triage.db import create_all, make_engine, session_factory
    from triage.kb.cases import import_cases
    from triage.kb.regulations import ingest_default_knowledge
    from triage.kb.store import KnowledgeStore, make_client
    from triage.queue.duplicates import load_tokenizer
    from triage.queue.service import intake

    with open(HAIKOU, encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        embedder = get_embedder()
        store = KnowledgeStore(make_client(Settings(data_dir=Path(tmp), chroma=str(Path(tmp) / "c"))))
        ingest_default_knowledge(settings, store=store, embedder=embedder)
        import_cases(HAIKOU, store=store, embedder=embedder)
        tuned = None
        if tuned_dir is not None:  # the encoder tuned on the Haikou file by the cold-start run
            from triage.classify.tuning import open_tuned_encoder

            tuned = open_tuned_encoder(tuned_dir, settings.model_copy(update={"model_cache_dir": Path(tmp) / "m"}))
        triager = Triager(store=store, embedder=embedder, settings=settings, tuned_encoder=tuned)
        engine = make_engine(f"sqlite:///{tmp}/t.db")
        create_all(engine)
        Session = session_factory(engine)
        load_tokenizer()  # as the server does at start-up: not inside the first timed complaint (~0.5 s)
        rng = np.random.default_rng(1)
        sample = [texts[i] for i in rng.choice(len(texts), n, replace=False)]
        times = []
        for t in sample:
            with Session() as s:
                t0 = time.perf_counter()
                c = intake(s, text=t, triager=triager, detect_duplicates=True)
                times.append((time.perf_counter() - t0) * 1000)
                assert c.status == "triaged", c.triage_error
        times.sort()
        return statistics.median(times), times[int(0.95 * (len(times) - 1))], float(np.mean(times))


def label_agreement(rows: list[dict], threshold: float = 90.0) -> dict[str, int]:
    """How often the office labelled the same order twice differently: a ceiling no model can pass.

    Pairs of orders whose texts (without the hotline's "市民来电反映：" preamble) are near-identical (rapidfuzz
    ratio >= threshold) and the share of them whose labels differ. Where a pair disagrees, any prediction gets
    at most one of the two right."""
    from rapidfuzz import fuzz, process

    from triage.classify.members import normalise
    from triage.taxonomy import NON_ROUTING_UNITS

    texts = [normalise(r["text"]) for r in rows]
    scores = process.cdist(texts, texts, scorer=fuzz.ratio, workers=-1)
    pairs = [(i, j) for i, j in zip(*np.nonzero(scores >= threshold)) if i < j]
    routed = [(i, j) for i, j in pairs
              if all(rows[k]["unit_type"] and rows[k]["unit_type"] not in NON_ROUTING_UNITS for k in (i, j))]
    return {"pairs": len(pairs), "type_disagree": sum(rows[i]["pollution_type"] != rows[j]["pollution_type"]
                                                      for i, j in pairs),
            "unit_pairs": len(routed), "unit_disagree": sum(rows[i]["unit_type"] != rows[j]["unit_type"]
                                                            for i, j in routed)}


FLAGGED = ("borderline", "ambiguous", "mixed", "multi-issue")  # label_note openings of debatable labels


def predicted_rows(test: Path, predictions: Path) -> tuple[list[dict], list[str]]:
    """(the test file's record, the system's pollution type) per prediction, matched on the row number that
    `triage eval --predictions` writes (rows without text have none)."""
    from triage.kb.cases import _records

    records = dict(_records(test))
    with predictions.open(encoding="utf-8") as f:
        preds = list(csv.DictReader(f))
    return [records[int(p["row"])] for p in preds], [p["pollution_type"] for p in preds]


def per_type_table(title: str, runs: dict[str, tuple[list[dict], list[str]]]) -> Table:
    """Recall and precision per pollution type, and how many errors fall on rows whose labelling note calls the
    label debatable (borderline / ambiguous / mixed / multi-issue): where a target is missed, this says where."""
    table = Table(title=title)
    table.add_column("pollution type")
    for name in runs:
        for col in ("n", "recall", "precision"):
            table.add_column(f"{col} ({name})", justify="right")
    types = sorted({r["pollution_type"] for rows, _ in runs.values() for r in rows})
    for t in types + ["all: errors / on flagged rows"]:
        cells = [t]
        for rows, pred in runs.values():
            truth = [r["pollution_type"] for r in rows]
            if t.startswith("all:"):
                wrong = [r for r, p in zip(rows, pred) if r["pollution_type"] != p]
                flagged = sum(r.get("label_note", "").startswith(FLAGGED) for r in wrong)
                cells += [f"{len(wrong)} errors", f"{flagged} flagged", ""]
                continue
            n = truth.count(t)
            hit = sum(a == b == t for a, b in zip(truth, pred))
            said = pred.count(t)
            cells += [str(n), f"{hit / n:.2f}" if n else "-", f"{hit / said:.2f}" if said else "-"]
        table.add_row(*cells)
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--latency-n", type=int, default=100)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--no-tune", action="store_true",
                    help="skip the tuned member (fine-tuning costs ~5 min per fold on 2 cores)")
    args = ap.parse_args()
    if not HAIKOU.exists():
        sys.exit(f"{HAIKOU} is absent: this benchmark needs ../shared/data")
    console = Console(width=160)
    settings = Settings()
    emb = CachedEmbedder(get_embedder(settings))
    with open(HAIKOU, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames), list(reader)
    y = [r["pollution_type"] for r in rows]
    folds, ablation = [], []  # ablation: the same folds without the tuned member
    cv_rows: list[dict] = []
    cv_pred: list[str] = []
    cold_rows: list[dict] = []
    cold_pred: list[str] = []
    tmp_keep = tempfile.TemporaryDirectory()
    tuned_dir = None if args.no_tune else Path(tmp_keep.name) / "tuned-encoder"
    with tempfile.TemporaryDirectory() as tmp:
        skf = StratifiedKFold(args.folds, shuffle=True, random_state=0)
        pred_path = Path(tmp) / "predictions.csv"
        for k, (a, b) in enumerate(skf.split(rows, y)):
            tr, te = Path(tmp) / "train.csv", Path(tmp) / "test.csv"
            write_rows(tr, header, [rows[i] for i in a])
            write_rows(te, header, [rows[i] for i in b])
            folds.append(evaluate(tr, te, settings=settings, embedder=emb, predictions=pred_path,
                                  tune=not args.no_tune))
            # Without tuning the system is its own ablation: the same run twice only cost time.
            ablation.append(folds[-1] if args.no_tune else evaluate(tr, te, settings=settings, embedder=emb,
                                                                    tune=False))
            fold_rows, fold_pred = predicted_rows(te, pred_path)
            cv_rows += fold_rows
            cv_pred += fold_pred
            console.print(f"fold {k + 1}/{args.folds}: type {folds[-1]['system']['type_accuracy']:.3f} "
                          f"(without the tuned member {ablation[-1]['system']['type_accuracy']:.3f}, "
                          f"baseline {folds[-1]['baseline']['type_accuracy']:.3f})")
        cold = cold_ablation = None
        if TAIDI.exists():
            cold = evaluate(HAIKOU, TAIDI, settings=settings, embedder=emb, predictions=pred_path,
                            tune=not args.no_tune, keep_tuned=tuned_dir)
            cold_ablation = cold if args.no_tune else evaluate(HAIKOU, TAIDI, settings=settings, embedder=emb,
                                                               tune=False)
            cold_rows, cold_pred = predicted_rows(TAIDI, pred_path)

    def mean(side: str, key: str, runs: list[dict]) -> str:
        vals = [r[side].get(key) for r in runs if r[side].get(key) is not None]
        return f"{np.mean(vals):.3f}" if vals else "-"

    table = Table(title=f"bench/triage.py — Haikou {args.folds}-fold CV (n={len(rows)}) and cold start")
    for col in ("metric", "system (CV)", "w/o tuned (CV)", "baseline (CV)", "system (cold)", "w/o tuned (cold)",
                "baseline (cold)"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key in KEYS:
        table.add_row(key, mean("system", key, folds), mean("system", key, ablation), mean("baseline", key, folds),
                      *((mean("system", key, [cold]), mean("system", key, [cold_ablation]),
                         mean("baseline", key, [cold])) if cold else ("-", "-", "-")))
    if not args.skip_latency:
        p50, p95, avg = latency(args.latency_n, tuned_dir if tuned_dir and tuned_dir.exists() else None)
        table.add_row("intake+triage latency p50 / p95 ms", f"{p50:.0f} / {p95:.0f}", "", "", "", "", "")
        if tuned_dir and tuned_dir.exists():
            p50, p95, avg = latency(args.latency_n, None)
            table.add_row("the same without the tuned member", "", f"{p50:.0f} / {p95:.0f}", "", "", "", "")
    tmp_keep.cleanup()
    console.print(table)
    runs = {"CV": (cv_rows, cv_pred)} | ({"cold": (cold_rows, cold_pred)} if cold else {})
    console.print(per_type_table("System per pollution type (CV: all folds together; cold: message-board posts)",
                                 runs))
    agree = label_agreement(rows)
    console.print(
        f"Label consistency of the Haikou file: {agree['pairs']} pairs of near-identical orders (rapidfuzz ratio "
        f">= 90), {agree['type_disagree']} with different pollution types; {agree['unit_pairs']} of them routed "
        f"to real units, {agree['unit_disagree']} of those to different units "
        f"({agree['unit_disagree'] / max(agree['unit_pairs'], 1):.0%}: on such orders no model can pass "
        f"{1 - agree['unit_disagree'] / max(agree['unit_pairs'], 1) / 2:.0%} unit accuracy).")


if __name__ == "__main__":
    main()
