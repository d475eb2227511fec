"""Search over the real embedder: the digest plus the 生态环境法典 in a temporary Chroma; the API route and the
CLI on top of the same search. The session fixture embeds ~1,300 chunks once (about two minutes on 2 cores), so the
tests that use it are marked slow (`.ci/run` runs them after the default suite); the rest run by default."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from triage.kb.regulations import CODE_TITLE, ingest_paths, parse_paths
from triage.kb.search import search
from triage.kb.store import CASES, REGULATIONS, KnowledgeStore
from triage.settings import Settings

LAWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "laws"
CODE_DIR = LAWS / "national" / "生态环境法典"
DIGEST_DIR = Path(__file__).resolve().parents[1] / "knowledge" / "regulations"
needs_laws = pytest.mark.skipif(not CODE_DIR.is_dir(), reason="../shared/data/laws not present")
IN_FORCE_DAY = date(2026, 11, 28)


def _store(path: Path) -> KnowledgeStore:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return KnowledgeStore(chromadb.PersistentClient(path=str(path),
                                                    settings=ChromaSettings(anonymized_telemetry=False)))


@pytest.fixture(scope="session")
def embedder():
    from triage.embeddings import get_embedder

    return get_embedder(Settings())


@pytest.fixture(scope="session")
def code_articles() -> dict[int, dict]:
    """article_no → {part_path, text} of the real Code (for judging what a right answer is)."""
    if not CODE_DIR.is_dir():
        pytest.skip("../shared/data/laws not present")
    out: dict[int, dict] = {}
    for pf in parse_paths([CODE_DIR]):
        for c in pf.chunks:
            entry = out.setdefault(c.metadata["article_no"], {"part_path": c.metadata["part_path"], "text": ""})
            entry["text"] += c.text
    return out


@pytest.fixture(scope="session")
def kb(tmp_path_factory, embedder):
    if not CODE_DIR.is_dir():
        pytest.skip("../shared/data/laws not present")
    store = _store(tmp_path_factory.mktemp("chroma-kb"))
    report = ingest_paths([DIGEST_DIR, CODE_DIR], store=store, embedder=embedder, progress=False)
    assert report.added == report.chunks > 1242
    cases = [("c1", "小区门口的餐馆油烟直接排到居民窗户", "air", "air.cooking_fumes", "urban_management"),
             ("c2", "半夜工地打桩施工噪音扰民", "noise", "noise.construction", "urban_management")]
    store.upsert(CASES, [c[0] for c in cases], embedder.embed_passages([c[1] for c in cases]), [c[1] for c in cases],
                 [{"order_id": c[0], "pollution_type": c[2], "subtype": c[3], "unit_type": c[4]} for c in cases])
    return store


def _construction_noise(code_articles) -> set[int]:
    chapter = {n for n, a in code_articles.items() if "建筑施工噪声" in a["part_path"]}
    penalties = {n for n, a in code_articles.items()
                 if "违反噪声污染防治规定" in a["part_path"] and "施工" in a["text"]}
    assert chapter == {568, 569, 570, 571, 572}
    return chapter | penalties


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_night_construction_noise_finds_a_construction_noise_article_in_force(kb, embedder, code_articles):
    wanted = _construction_noise(code_articles)
    results = search("夜里工地还在施工，噪音太大", collection=REGULATIONS, k=5, on=IN_FORCE_DAY, store=kb,
                     embedder=embedder)
    assert len(results) == 5
    good = [r for r in results if r["law"] == CODE_TITLE and r["in_force"] and r["article_no"] in wanted]
    assert good, [(r["law"], r["article"], r["source"]) for r in results]
    # one result per article, best first
    keys = [(r["law"], r["article_no"]) for r in results]
    assert len(set(keys)) == len(keys)
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True)


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_restaurant_fumes_find_a_cooking_fumes_article(kb, embedder, code_articles):
    fumes = {n for n, a in code_articles.items() if "油烟" in a["text"] and "餐饮" in a["text"]}
    assert {250, 1132} <= fumes
    results = search("楼下饭店油烟直排", collection=REGULATIONS, k=5, on=IN_FORCE_DAY, store=kb, embedder=embedder)
    assert any(r["law"] == CODE_TITLE and r["article_no"] in fumes and r["in_force"] for r in results), \
        [(r["law"], r["article"]) for r in results]


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_in_force_follows_the_date(kb, embedder):
    before = search("楼下饭店油烟直排", k=5, on=date(2026, 1, 1), store=kb, embedder=embedder)
    assert before and not any(r["in_force"] for r in before if r["law"] == CODE_TITLE)
    only = search("楼下饭店油烟直排", k=5, on=date(2026, 1, 1), store=kb, embedder=embedder, in_force_only=True)
    assert all(r["law"] != CODE_TITLE for r in only)


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_cases_collection(kb, embedder):
    results = search("饭店油烟熏到我家", collection=CASES, k=2, store=kb, embedder=embedder)
    assert [r["id"] for r in results][0] == "c1"
    assert results[0]["pollution_type"] == "air" and results[0]["unit_type"] == "urban_management"


# ------------------------------------------------------------------------------------------------------- API
@pytest.fixture
def api(kb, embedder, tmp_path):
    from triage.api import knowledge

    app = FastAPI()
    app.include_router(knowledge.router)
    app.dependency_overrides[knowledge.get_kb_settings] = lambda: Settings(data_dir=tmp_path)
    app.dependency_overrides[knowledge.get_kb_store] = lambda: kb
    app.dependency_overrides[knowledge.get_kb_embedder] = lambda: embedder
    return TestClient(app)


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_api_search_regulations(api):
    resp = api.get("/api/knowledge/search", params={"q": "夜里工地还在施工，噪音太大", "k": 3, "on": "2026-09-01"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["query"] == "夜里工地还在施工，噪音太大" and body["collection"] == "regulations"
    assert len(body["results"]) == 3
    for r in body["results"]:
        assert {"law", "article", "article_no", "text", "in_force", "similarity", "part_path", "source"} <= set(r)
    assert any(r["law"] == CODE_TITLE and r["in_force"] for r in body["results"])
    old = api.get("/api/knowledge/search", params={"q": "夜里工地还在施工", "on": "2026-08-14"}).json()
    assert not any(r["in_force"] for r in old["results"] if r["law"] == CODE_TITLE)


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_api_search_cases(api):
    resp = api.get("/api/knowledge/search", params={"q": "深夜工地打桩", "collection": "cases", "k": 1})
    assert resp.status_code == 200, resp.text
    [hit] = resp.json()["results"]
    assert set(hit) >= {"id", "text", "pollution_type", "subtype", "unit_type", "similarity"}
    assert hit["id"] == "c2" and hit["subtype"] == "noise.construction"


class ExplodingEmbedder:
    def __getattr__(self, name):
        raise AssertionError("a request that fails validation must not touch the embedder")


@pytest.mark.parametrize("params,reason", [
    ({}, "不能为空"),
    ({"q": "   "}, "不能为空"),
    ({"q": "噪音", "k": 0}, "k"),
    ({"q": "噪音", "k": 51}, "k"),
    ({"q": "噪音", "collection": "laws"}, "collection"),
    ({"q": "噪音", "on": "2026-13-01"}, "on"),
])
def test_api_rejects_bad_input_with_a_reason(params, reason, tmp_path):
    from triage.api import knowledge

    app = FastAPI()
    app.include_router(knowledge.router)
    app.dependency_overrides[knowledge.get_kb_settings] = lambda: Settings(data_dir=tmp_path)
    app.dependency_overrides[knowledge.get_kb_store] = lambda: None
    app.dependency_overrides[knowledge.get_kb_embedder] = lambda: ExplodingEmbedder()
    resp = TestClient(app).get("/api/knowledge/search", params=params)
    assert resp.status_code == 422
    assert reason in resp.json()["detail"]


# ------------------------------------------------------------------------------------------------------- CLI
class FakeEmbedder:
    model_id = "fake"
    dim = 384

    def embed_passages(self, texts, progress=False):
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text):
        return self.embed_passages([text])[0]


def _cli(monkeypatch, store, embedder, tmp_path):
    from triage.kb import commands

    monkeypatch.setattr(commands, "open_knowledge_base", lambda settings: (store, embedder))
    monkeypatch.setattr(commands, "get_settings", lambda: Settings(data_dir=tmp_path))
    return commands.kb_app


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
@needs_laws
def test_cli_search_json_and_table(kb, embedder, monkeypatch, tmp_path):
    app = _cli(monkeypatch, kb, embedder, tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["search", "楼下饭店油烟直排", "-k", "3", "--json", "--on", "2026-09-01"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 3 and all({"law", "article", "in_force", "similarity"} <= set(r) for r in rows)
    res = runner.invoke(app, ["search", "楼下饭店油烟直排", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "现行有效" in res.stdout and "是" in res.stdout
    res = runner.invoke(app, ["search", "半夜打桩", "--collection", "cases", "-k", "1"])
    assert res.exit_code == 0 and "c2" in res.stdout


def test_cli_errors_are_clear(monkeypatch, tmp_path):
    app = _cli(monkeypatch, _store(tmp_path / "c"), FakeEmbedder(), tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.md")])
    assert res.exit_code == 1 and "路径不存在" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["search", "噪音", "--collection", "laws"])
    assert res.exit_code == 2 and "未知的集合" in res.output
    res = runner.invoke(app, ["search", "噪音", "-k", "0"])
    assert res.exit_code == 2


def test_cli_first_use_ingests_the_digest_then_ingest_is_idempotent(monkeypatch, tmp_path):
    store = _store(tmp_path / "c")
    app = _cli(monkeypatch, store, FakeEmbedder(), tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["search", "施工噪声", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 5  # the digest was ingested on first use
    n = store.count(REGULATIONS)
    assert n >= 40

    law = tmp_path / "测试法.md"
    law.write_text("# 中华人民共和国测试法\n\n第一条 为了测试。\n\n第二条 本法自2020年1月1日起施行。\n", encoding="utf-8")
    res = runner.invoke(app, ["ingest", str(law)])
    assert res.exit_code == 0, res.output
    assert "法规入库结果" in res.stdout and store.count(REGULATIONS) == n + 2
    res = runner.invoke(app, ["ingest", str(law)])
    assert res.exit_code == 0 and store.count(REGULATIONS) == n + 2
    (tmp_path / "空目录").mkdir()
    res = runner.invoke(app, ["ingest", str(tmp_path / "空目录")])
    assert res.exit_code == 1 and "没有法规文件" in res.output and "Traceback" not in res.output


LOCAL_DIR = LAWS / "local"


@pytest.mark.skipif(not LOCAL_DIR.is_dir(), reason="../shared/data/laws/local not present")
def test_local_regulations_say_where_they_apply(tmp_path, embedder):
    """A Guangdong regulation applies to a Guangzhou street, not to a Haikou district; search says so."""
    store = _store(tmp_path / "chroma")
    ingest_paths([LOCAL_DIR / "广东省建筑垃圾管理条例(2022-11-30).md"], store=store, embedder=embedder, progress=False)
    guangzhou = search("建筑垃圾乱倒", k=3, on=IN_FORCE_DAY, store=store, embedder=embedder,
                       jurisdiction="gz_baiyun_junhe")
    haikou = search("建筑垃圾乱倒", k=3, on=IN_FORCE_DAY, store=store, embedder=embedder, jurisdiction="hk_longhua")
    assert guangzhou and all(r["level"] == "local" and r["applies_here"] for r in guangzhou)
    assert haikou and not any(r["applies_here"] for r in haikou)


@pytest.mark.slow  # the Code's ~1,300 chunks embedded once: about two minutes on two cores
def test_a_suggestion_cites_each_article_once(kb, embedder, tmp_path):
    # The digest writes 第二百五十条 as three provisions and the Code holds it too: all four sit near a fumes
    # complaint. The dispatcher should see distinct articles, the best-matching passage of each.
    from triage.classify.service import Triager

    triager = Triager(store=kb, embedder=embedder, settings=Settings(data_dir=tmp_path))
    s = triager.suggest("楼下饭店油烟直排，没装净化器，熏得家里没法开窗")
    cited = [(r.law, r.article) for r in s.regulations]
    assert len(cited) == len(set(cited)) >= 3, cited
    assert any(r.article_no == 250 for r in s.regulations)


def test_first_triage_through_the_api_ingests_the_digest(tmp_path):
    # An office that starts the app with uvicorn and skips `triage init` still gets articles with suggestions.
    from fastapi.testclient import TestClient

    from triage.api.app import create_app
    from triage.classify.service import reset_triager
    from triage.kb.store import reset_store_cache

    reset_triager()
    reset_store_cache()
    try:
        settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}", demo_data=False)
        with TestClient(create_app(settings, retry_on_startup=False)) as client:
            r = client.post("/api/complaints", json={"text": "楼下饭店油烟直排，熏得没法开窗"})
        assert r.status_code == 201 and r.json()["status"] == "triaged", r.text
        assert any(a["article"] == "第二百五十条" for a in r.json()["suggestion"]["regulations"])
    finally:
        reset_triager()
        reset_store_cache()
