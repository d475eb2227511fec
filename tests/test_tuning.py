"""The office's tuned encoder: fine-tuning on labelled cases, `triage tune`, and the triager picking it up."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from triage.classify.service import Triager
from triage.classify.tuning import (MANIFEST, fine_tune, labelled_cases, load_tuned_encoder, read_manifest,
                                    tuned_model_dir)
from triage.embeddings import ensure_model, get_embedder, onnx_path_for
from triage.kb.cases import CaseRow, store_cases
from triage.kb.store import KnowledgeStore, make_client
from triage.settings import Settings

# Three kinds an untuned encoder tells apart only loosely (all are "something smells / is loud near my home").
KINDS = {
    ("air", "air.cooking_fumes", "urban_management"): [
        "楼下饭店油烟直排熏得家里没法开窗", "烧烤摊油烟很大飘进住户家里", "餐馆排烟管道对着居民楼窗户",
        "小吃店油烟净化器不开，满楼道油烟味", "夜市排档油烟熏人", "快餐店厨房油烟直接排到后巷",
        "火锅店排风口正对小区，油烟大", "食堂油烟扰民多次反映未解决",
    ],
    ("noise", "noise.social_life", "public_security"): [
        "楼上住户半夜大声喧哗吵得睡不着", "邻居家凌晨还在唱歌打麻将", "隔壁租户深夜吵架摔东西",
        "楼下有人半夜在小区里大声喧哗", "对门住户每晚聚会很吵", "楼上深夜拖动家具声音很大",
        "隔壁邻居半夜放音乐扰民", "小区里有人凌晨喝酒喧闹",
    ],
    ("water", "water.sewage", "water_affairs"): [
        "小区污水管破裂污水流到路上", "河边排污口排出黑臭污水", "生活污水直接排进河沟",
        "下水道堵塞污水外溢发臭", "村里污水横流没人管", "排水管道把污水排到水塘里",
        "路边化粪池满溢污水四流", "河道里有污水排放，水发黑",
    ],
}


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def _settings(tmp_path) -> Settings:
    # torch, not ONNX: the test measures tuning, not the export (which test_embeddings covers)
    return Settings(data_dir=tmp_path, chroma=str(tmp_path / "chroma"), embedding_backend="torch")


def _store(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore(make_client(settings))


def _rows() -> list[CaseRow]:
    rows = []
    for (ptype, subtype, unit), texts in KINDS.items():
        rows += [CaseRow(row=len(rows) + i, order_id=f"T{len(rows) + i}", text=t, pollution_type=ptype,
                         subtype=subtype, unit_type=unit) for i, t in enumerate(texts)]
    return rows


def _separation(vectors: np.ndarray, labels: list[str]) -> float:
    """Mean cosine within a kind minus mean cosine across kinds (unit vectors)."""
    sims = vectors @ vectors.T
    same = np.array([[a == b for b in labels] for a in labels])
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(sims[same & off_diagonal].mean() - sims[~same].mean())


@pytest.mark.slow  # fine-tunes an encoder (45 s on a slow two-core machine)
def test_tuning_pulls_each_kind_together_and_the_triager_uses_it(tmp_path, embedder):
    settings = _settings(tmp_path)
    store = _store(settings)
    store_cases(_rows(), store=store, embedder=embedder)
    texts, targets = labelled_cases(store)
    assert len(texts) == 24 and set(targets["unit"]) == {"urban_management", "public_security", "water_affairs"}
    steps = []
    # Six passes: with two, 24 cases make only four small steps (the real history makes a hundred).
    report = fine_tune(texts, targets, base=ensure_model(settings), target=tuned_model_dir(settings), epochs=6,
                       progress=lambda i, n: steps.append((i, n)))
    assert steps[-1] == (12, 12)  # 24 cases in batches of 16, six epochs
    assert report.labels == {"type": 3, "subtype": 3, "unit": 3}
    assert read_manifest(tuned_model_dir(settings))["fingerprint"] == report.fingerprint

    stale = onnx_path_for(tuned_model_dir(settings), settings).with_name("tuned-encoder-0ld0ld0ld0ld.onnx")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"an export of an earlier tuning")
    tuned = load_tuned_encoder(settings)
    assert not stale.exists()  # nightly tunings do not pile up exports in the model cache
    before = embedder.embed_queries(texts)
    after = tuned.embed_queries(texts)
    assert _separation(after, targets["type"]) > _separation(before, targets["type"]) + 0.05

    triager = Triager(store=store, embedder=embedder, settings=settings)  # "auto": finds the tuned encoder
    assert triager.tuned is not None and set(triager.tuned.models) == {"type", "subtype", "unit"}
    assert triager.versions["model"].endswith(f"+tuned-{report.fingerprint}")
    s = triager.suggest("楼下烧烤店油烟太大，窗户都不敢开")
    assert (s.pollution_type, s.subtype) == ("air", "air.cooking_fumes")


@pytest.mark.slow  # fine-tunes an encoder and quantises its export (60 s on a slow two-core machine)
def test_a_running_triager_picks_up_a_newer_tuning_and_runs_its_int8_copy(tmp_path, embedder):
    """With the ONNX backend (the default) the tuned encoder runs its int8 copy and the versions say so; the cleanup
    of earlier tunings' exports keeps the current export and its copy."""
    from triage.embeddings import int8_path_for

    settings = Settings(data_dir=tmp_path, chroma=str(tmp_path / "chroma"), model_cache_dir=tmp_path / "models")
    store = _store(settings)
    store_cases(_rows(), store=store, embedder=embedder)
    triager = Triager(store=store, embedder=embedder, settings=settings)
    assert triager.tuned is None and "tuned" not in triager.versions["model"]
    assert not triager.refresh_if_changed()
    texts, targets = labelled_cases(store)
    report = fine_tune(texts, targets, base=ensure_model(settings), target=tuned_model_dir(settings), epochs=1)
    export = onnx_path_for(tuned_model_dir(settings), settings)
    stale = export.with_name("tuned-encoder-0ld0ld0ld0ld-int8.onnx")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"the int8 copy of an earlier tuning")
    assert triager.refresh_if_changed()  # no new case, but a new encoder
    assert triager.tuned is not None and triager.tuned_encoder.backend == "onnx-int8"
    assert triager.versions["model"].endswith(f"+tuned-{report.fingerprint}-int8")
    assert export.exists() and int8_path_for(export).exists() and not stale.exists()
    assert triager.suggest("河边排污口流出黑水").pollution_type == "water"
    exact = Triager(store=store, embedder=embedder, settings=settings, tuned_encoder=load_tuned_encoder(
        settings.model_copy(update={"tuned_encoder_int8": False})))
    assert exact.tuned_encoder.backend == "onnx" and exact.versions["model"].endswith(f"+tuned-{report.fingerprint}")


def test_a_broken_tuned_model_leaves_triage_working(tmp_path, embedder):
    settings = _settings(tmp_path)
    folder = tuned_model_dir(settings)
    folder.mkdir(parents=True)
    (folder / "modules.json").write_text("not json")
    (folder / MANIFEST).write_text('{"fingerprint": "x", "created": "now"}')
    store = _store(settings)
    store_cases(_rows(), store=store, embedder=embedder)
    triager = Triager(store=store, embedder=embedder, settings=settings)
    assert triager.tuned is None
    assert triager.suggest("河边排污口流出黑水").pollution_type == "water"


def test_tune_without_labelled_cases_says_what_to_do(tmp_path, monkeypatch):
    from triage.cli import app
    from triage.settings import get_settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRIAGE_CHROMA", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["tune"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "at least 20 labelled cases" in said and "triage cases import" in said
    assert not tuned_model_dir(Settings(data_dir=tmp_path)).exists()

