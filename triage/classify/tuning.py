"""The office's own encoder: the embedding model fine-tuned on the office's labelled cases.

The frozen multilingual-e5-small separates pollution types only roughly: a logistic regression over its vectors
gets 0.88 on a Haikou fold. Fine-tuning the encoder itself on the office's cases, with one softmax head per label
(pollution type, subtype, unit) for two epochs, moves the same regression to 0.95, and to 0.65 instead of 0.45 on
message-board posts written in another style (`bench/triage.py` measures the ensemble with and without it).

Tuning takes minutes (about five for 900 cases on two cores), so it does not run on every closure: `triage tune`
(nightly, or after a large import) writes a new model folder under the data directory, and the triager uses it
from its next retraining on, refitting the member's regression on all current cases, those closed since included.
The heads used in training are dropped: the regression refit on current cases replaces them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from triage.embeddings import complaint_for_embedding
from triage.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "tuning.json"
EPOCHS = 2
BATCH_SIZE = 16
ENCODER_LR = 3e-5
HEAD_LR = 1e-3
# Cosine logits of unit vectors are in [-1, 1]; the heads see them scaled so that softmax can become confident.
LOGIT_SCALE = 20.0
# Tuning time grows linearly with the cases: beyond this many, only the last ones (in the knowledge base's order)
# tune the encoder; the member's regression still learns from all of them.
MAX_TUNING_CASES = 6000
MIN_TUNING_CASES = 20
LABELS = ("type", "subtype", "unit")


@dataclass
class TuningReport:
    cases: int
    epochs: int
    labels: dict[str, int]  # label → number of classes it was tuned on
    base_model: str
    created: str
    seconds: float
    fingerprint: str


def tuned_model_dir(settings: Settings) -> Path:
    """Where the office's tuned encoder lives: with the office's data, not in the shared model cache."""
    return Path(settings.data_dir) / "models" / "tuned-encoder"


def fine_tune(texts: list[str], targets: dict[str, list[str]], *, base: Path, target: Path,
              epochs: int = EPOCHS, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> TuningReport:
    """Fine-tune the sentence-transformers model at ``base`` on ``texts`` and write it to ``target``.

    targets: {"type": [...], "subtype": [...], "unit": [...]} aligned with texts; "" = unknown (left out of that
    head's loss). The folder is written beside ``target`` and renamed into place, so a running server never
    loads half a model."""
    import time

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    if len(texts) < MIN_TUNING_CASES:
        raise ValueError(f"tuning needs at least {MIN_TUNING_CASES} labelled cases, got {len(texts)}")
    t0 = time.perf_counter()
    texts = texts[-MAX_TUNING_CASES:]
    targets = {k: v[-MAX_TUNING_CASES:] for k, v in targets.items()}
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else \
        model.get_sentence_embedding_dimension()
    heads, golds, counts = [], [], {}
    for key in LABELS:
        ys = targets.get(key) or []
        classes = sorted({y for y in ys if y})
        if len(classes) < 2:
            continue
        index = {c: i for i, c in enumerate(classes)}
        heads.append(torch.nn.Linear(dim, len(classes)))
        golds.append(torch.tensor([index.get(y, -100) for y in ys]))  # -100: no label, no loss
        counts[key] = len(classes)
    if not heads:
        raise ValueError("tuning needs at least two distinct labels of one kind (type, subtype or unit)")
    optimiser = torch.optim.AdamW([{"params": model.parameters(), "lr": ENCODER_LR}]
                                  + [{"params": h.parameters(), "lr": HEAD_LR} for h in heads])
    prefix = (getattr(model, "prompts", None) or {}).get("query", "")  # e5: "query: "; models without prompts: ""
    inputs = [prefix + complaint_for_embedding(t) for t in texts]
    steps = epochs * ((len(inputs) + BATCH_SIZE - 1) // BATCH_SIZE)
    generator = torch.Generator().manual_seed(seed)
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6 renamed it
    done = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            features = preprocess([inputs[i] for i in batch])
            vectors = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1) * LOGIT_SCALE
            losses = [torch.nn.functional.cross_entropy(h(vectors), g[batch], ignore_index=-100)
                      for h, g in zip(heads, golds) if (g[batch] >= 0).any()]
            if losses:
                optimiser.zero_grad()
                sum(losses).backward()
                optimiser.step()
            done += 1
            if progress:
                progress(done, steps)
    model.eval()
    fingerprint = hashlib.sha1(json.dumps([inputs, targets], ensure_ascii=False).encode()).hexdigest()[:12]
    report = TuningReport(cases=len(inputs), epochs=epochs, labels=counts, base_model=Path(base).name,
                          created=datetime.now().isoformat(timespec="seconds"),
                          seconds=round(time.perf_counter() - t0, 1), fingerprint=fingerprint)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save(str(partial))
    (partial / MANIFEST).write_text(json.dumps(asdict(report), ensure_ascii=False, indent=1), encoding="utf-8")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    log.info("tuned encoder written to %s (%d cases, %.0fs)", target, report.cases, report.seconds)
    return report


def read_manifest(path: Path) -> dict | None:
    """The tuning manifest of a tuned model folder, or None where there is no (complete) tuned model."""
    manifest = Path(path) / MANIFEST
    if not manifest.exists() or not (Path(path) / "modules.json").exists():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("unreadable tuning manifest %s: the tuned encoder is not used", manifest)
        return None


def tuned_stamp(settings: Settings) -> str | None:
    """Identifies the tuned encoder on disk (None: there is none), so a running triager notices a newer one."""
    m = read_manifest(tuned_model_dir(settings))
    return f"{m.get('fingerprint')}@{m.get('created')}" if m else None


def open_tuned_encoder(path: Path, settings: Settings):
    """A tuned model folder as an Embedder (ONNX where it reproduces torch; the export goes to settings' model
    cache). Raises where the folder cannot be loaded.

    It runs the export's int8 copy: the tuned vectors are read only by the member's regression, refit on the same
    int8 vectors at every retraining, and the tuned pass is most of what the member adds to a triage's time
    (INT8_MIN_COSINE in embeddings.py has the figures)."""
    from triage.embeddings import Embedder, onnx_path_for

    return Embedder(Path(path), settings.embedding_batch_size, backend=settings.embedding_backend,
                    onnx_path=onnx_path_for(Path(path), settings), int8=settings.tuned_encoder_int8)


def load_tuned_encoder(settings: Settings):
    """The office's tuned encoder as an Embedder, or None if there is none or it cannot be loaded (the ensemble
    then runs without the tuned member)."""
    from triage.embeddings import int8_path_for, onnx_path_for

    path = tuned_model_dir(settings)
    if read_manifest(path) is None:
        return None
    onnx_path = onnx_path_for(path, settings)
    try:
        encoder = open_tuned_encoder(path, settings)
    except Exception:  # noqa: BLE001 - a broken tuned model must not stop triage
        log.exception("the tuned encoder at %s could not be loaded: triaging without it", path)
        return None
    # Each tuning gets its own export (~0.5 GB); the earlier ones would pile up night after night.
    for old in onnx_path.parent.glob(f"{path.name}-*.onnx"):
        if old != onnx_path and old != int8_path_for(onnx_path):
            old.unlink(missing_ok=True)
    return encoder


def labelled_cases(store) -> tuple[list[str], dict[str, list[str]]]:
    """The labelled cases of the knowledge base as tuning input: texts and their type, subtype and unit ("" where a
    case has none, or its unit routes nowhere: dispatch centre, company, other). A case that is not ours has no
    subtype; its subtype head learns "not ours" as a class of its own, as the ensemble's subtype labels do."""
    from triage.kb.store import CASES
    from triage.taxonomy import NON_ROUTING_UNITS, NOT_ENV

    data = store.get_all(CASES)
    texts: list[str] = []
    targets: dict[str, list[str]] = {key: [] for key in LABELS}
    for text, meta in zip(data.get("documents") or [], data.get("metadatas") or []):
        if not text or not meta or not meta.get("pollution_type"):
            continue
        texts.append(text)
        targets["type"].append(meta["pollution_type"])
        not_ours = meta["pollution_type"] == NOT_ENV
        targets["subtype"].append(meta.get("subtype") or (NOT_ENV if not_ours else ""))
        unit = meta.get("unit_type") or ""
        targets["unit"].append("" if unit in NON_ROUTING_UNITS else unit)
    return texts, targets


def tune_office_encoder(settings: Settings, store, *, epochs: int = EPOCHS,
                        progress: Callable[[int, int], None] | None = None) -> TuningReport:
    """`triage tune`: fine-tune the base embedding model on the knowledge base's labelled cases and put the result
    where triagers pick it up (`tuned_model_dir`)."""
    from triage.embeddings import ensure_model

    texts, targets = labelled_cases(store)
    return fine_tune(texts, targets, base=ensure_model(settings), target=tuned_model_dir(settings), epochs=epochs,
                     progress=progress)
